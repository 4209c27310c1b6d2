"""The parent process of ``callsd loadtest``: preflight, worker processes, live progress, server scraping, results.

The parent never touches media. It checks the server is reachable (``GET /healthz``), forks ``processes`` workers
(calls are dealt round-robin, so every call lives wholly in one worker and its users share one clock for join
latency), then once a second: drains the workers' progress snapshots, scrapes the server's ``/metrics`` (process CPU
seconds, resident memory, RTP packets out), appends a timeline point and refreshes the rich display. At the end it
merges the workers' results into one JSON document (see :func:`build_results`).

Server CPU: from ``process_cpu_seconds_total`` in ``/metrics`` when present, or from ``/proc/<pid>/stat`` when the
caller passes ``server_pid`` (the capacity bench does, since it started the server). "Steady" figures cover the
window after the last join (plus one second) to the end of sending, which is what a capacity table wants.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import multiprocessing
import os
import queue as queue_mod
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from callsd.peer import Histogram, summarize

from . import simulcast
from .worker import WorkerSpec, spec_to_dict, worker_process_main

__all__ = ["WEB_CLIENT_AUDIO_SLOTS", "LoadConfig", "ServerUnreachable", "preflight", "scrape_metrics", "parse_metrics", "run", "build_results"]


# The audio slots the web client asks for in its offers (app/static/media.js, ``AUDIO_SLOTS``; ADR 0020): the load
# tool asks for as many by default, so a load is negotiated as real users' is (2.0 offer/answer rounds per join in
# 8-user calls, not 5.38). tests/loadtest/test_audio_slots_default.py holds the two to one value.
WEB_CLIENT_AUDIO_SLOTS = 8


class ServerUnreachable(Exception):
    """The server did not answer ``GET /healthz``; the message is one line for the user."""


@dataclass(slots=True)
class LoadConfig:
    url: str = "http://127.0.0.1:8080"
    calls: int = 1
    users_per_call: int = 2
    unmuted: int = 1
    screen_sharing: int = 0
    video: bool = False
    video_bitrate: int = 500_000
    screen_bitrate: int = 1_000_000
    duration: float = 30.0
    join_duration: float = 5.0
    processes: int = 1
    token_secret: str = ""
    output: str = ""
    delay_sample: int = 1
    join_timeout: float = 15.0
    server_pid: int = 0
    reconnect: bool = False
    audio_slots: int = WEB_CLIENT_AUDIO_SLOTS  # N pre-negotiated audio receive sections (0: one section per track)
    batch: bool = False  # ask for batch frames (protocol 1.3)
    quiet: bool = False
    run_id: str = field(default_factory=lambda: os.urandom(3).hex())
    urls: list[str] = field(default_factory=list)  # several: users round-robin over them (``url`` is the first)
    screen_simulcast: bool = False  # sharers publish three simulcast layers (simulcast.py)
    media_engine: str = "auto"  # the simulated users' media engine: "auto", "native", "shared" (C) or "python"

    def http_base(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme or "http")
        return urllib.parse.urlunsplit((scheme, parts.netloc, "", "", "")).rstrip("/")

    def ws_url(self, url: str = "") -> str:
        parts = urllib.parse.urlsplit(url or self.url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path if parts.path.endswith("/websocket") else "/api/v1/websocket"
        return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def preflight(cfg: LoadConfig, timeout: float = 3.0) -> None:
    """Raise :class:`ServerUnreachable` with a one-line reason when the server's HTTP port does not answer."""
    url = cfg.http_base() + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read(4096)
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            raise ServerUnreachable(f"the server at {cfg.http_base()} is draining (503 on /healthz)") from None
        return  # it answered: reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ServerUnreachable(f"cannot reach the server at {cfg.http_base()}: {reason}") from None


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, float]:
    """The figures the load tool needs from a Prometheus text page (names matched by suffix, prefix-agnostic).

    Returns ``cpu_seconds``, ``start_time``, ``rss_bytes``, ``rtp_packets_out``, ``rtp_packets_in``
    (``type="rtp"`` only) and ``sessions`` when present.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels_text, value_text = m.group(1), m.group(2) or "", m.group(3)
        try:
            value = float(value_text)
        except ValueError:
            continue
        labels = dict(_LABEL.findall(labels_text))
        if name.endswith("process_cpu_seconds_total"):
            out["cpu_seconds"] = value
        elif name.endswith("process_start_time_seconds"):
            out["start_time"] = value  # which server process answered: a restart changes it
        elif name.endswith("process_resident_memory_bytes"):
            out["rss_bytes"] = value
        elif name.endswith("rtc_rtp_packets_total"):
            if labels.get("type", "rtp") != "rtp":
                continue  # RTCP, STUN and DTLS are counted apart; the capacity figures are about media packets
            direction = labels.get("direction", "")
            key = "rtp_packets_out" if direction in ("out", "egress", "tx", "sent") else "rtp_packets_in"
            out[key] = out.get(key, 0.0) + value
        elif name.endswith("rtc_sessions_total") or name.endswith("rtc_sessions"):
            out["sessions"] = value
        elif (layer_key := simulcast.metric_key(name, labels)) is not None:
            out[layer_key] = value  # per simulcast layer (--screen-simulcast)
        elif name.endswith(("media_host_calls", "media_host_sessions")) and "host" in labels:
            # where serve placed the calls (media workers or rtcd hosts, docs/rtcd.md): "host_calls/<host>"
            out[f"host_{name.rsplit('_', 1)[1]}/{labels['host']}"] = value
    return out


def _proc_stat(pid: int) -> dict[str, float]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        return {"cpu_seconds": (int(fields[11]) + int(fields[12])) / ticks, "rss_bytes": int(fields[21]) * page,
                "start_time": _BOOT_TIME + int(fields[19]) / ticks}
    except (OSError, IndexError, ValueError):
        return {}


def _boot_time() -> float:
    """Seconds since the epoch at boot (``btime`` in /proc/stat), so /proc start times compare with /metrics'."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0


_BOOT_TIME = _boot_time()


def scrape_metrics(cfg: LoadConfig, timeout: float = 1.5) -> tuple[dict[str, float], float]:
    """One scrape: ``/metrics`` (nothing if unreachable) overlaid with /proc figures for ``server_pid``.

    Returns the figures and the ``time.monotonic()`` their CPU seconds refer to: /proc is read first and stamped
    at once; without it, the stamp is taken when the HTTP answer arrives (a busy server answers late, and CPU % over
    a window must use the time the counter was read, not the time the scrape began).

    ``refused`` = 1 when nothing listens on the HTTP port any more (the server is gone, not merely busy), and
    ``pid_gone`` = 1 when ``server_pid`` no longer exists: either makes the run invalid (see :func:`validity`).
    """
    figures: dict[str, float] = {}
    proc = _proc_stat(cfg.server_pid) if cfg.server_pid else {}
    at = time.monotonic()
    try:
        with urllib.request.urlopen(cfg.http_base() + "/metrics", timeout=timeout) as resp:
            figures = parse_metrics(resp.read(8 * 1024 * 1024).decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        if isinstance(exc.reason if isinstance(exc, urllib.error.URLError) else exc, ConnectionRefusedError):
            figures["refused"] = 1.0
    if not proc:
        at = time.monotonic()
        if cfg.server_pid:
            figures["pid_gone"] = 1.0
    figures.update(proc)
    return figures, at


def _same_process(a: dict[str, float], b: dict[str, float]) -> bool:
    """Two scrapes of one server process: same start time (when both carry it), CPU not gone backwards."""
    if "start_time" in a and "start_time" in b and abs(a["start_time"] - b["start_time"]) > 0.5:
        return False
    return b.get("cpu_seconds", 0.0) >= a.get("cpu_seconds", 0.0)


def process_delta(scrapes: list[tuple[float, dict[str, float]]], key: str, start: float = float("-inf"),
                  end: float = float("inf"), also: str = "") -> tuple[float, float] | None:
    """(increase of counter ``key``, seconds it covers) over consecutive scrapes in [start, end] of one process.

    Pairs of scrapes that straddle a restart (or where either lacks the key) are left out, so a counter that
    restarts from zero never yields a negative figure; ``None`` when no pair qualifies. With ``also``, only scrapes
    that carry both keys count, so two figures cover the same window."""
    window = [(t, s) for t, s in scrapes if start <= t <= end and key in s and (not also or also in s)]
    delta = seconds = 0.0
    pairs = 0
    for (t0, a), (t1, b) in zip(window, window[1:], strict=False):
        if not _same_process(a, b) or b[key] < a[key]:
            continue
        delta += b[key] - a[key]
        seconds += t1 - t0
        pairs += 1
    return (delta, seconds) if pairs else None


def validity(scrapes: list[tuple[float, dict[str, float]]], final: dict[str, float]) -> list[str]:
    """Why the run's figures cannot be trusted (empty when they can): the server restarted, died or vanished."""
    reasons: list[str] = []
    starts = {round(s["start_time"]) for _, s in [*scrapes, (0.0, final)] if "start_time" in s}
    if len(starts) > 1:
        reasons.append(f"the server process changed during the run ({len(starts)} different start times)")
    gone = next((t for t, s in scrapes if s.get("pid_gone")), None)
    if gone is not None or final.get("pid_gone"):
        reasons.append("the server process exited during the run"
                       + (f" (gone at {gone:.1f} s)" if gone is not None else ""))
    refused = next((t for t, s in scrapes if s.get("refused")), None)
    if refused is not None or final.get("refused"):
        reasons.append("the server stopped accepting connections"
                       + (f" (at {refused:.1f} s)" if refused is not None else " (at the end)"))
    return reasons


def scrapes_append(scrapes: list[tuple[float, dict[str, float]]], t0: float, cfg: LoadConfig) -> dict[str, float]:
    server, at = scrape_metrics(cfg)
    scrapes.append((at - t0, server))
    return server


def _specs(cfg: LoadConfig, t0: float) -> list[WorkerSpec]:
    n = max(1, min(cfg.processes, cfg.calls))
    return [
        WorkerSpec(
            ws_url=cfg.ws_url(), index=w, calls=[c for c in range(cfg.calls) if c % n == w],
            total_calls=cfg.calls, users_per_call=cfg.users_per_call, unmuted=cfg.unmuted,
            screen_sharing=cfg.screen_sharing, video=cfg.video, video_bitrate=cfg.video_bitrate,
            screen_bitrate=cfg.screen_bitrate, join_duration=cfg.join_duration, duration=cfg.duration, t0=t0,
            run_id=cfg.run_id, token_secret=cfg.token_secret, delay_sample=cfg.delay_sample,
            join_timeout=cfg.join_timeout, reconnect=cfg.reconnect, audio_slots=cfg.audio_slots, batch=cfg.batch,
            media_engine=cfg.media_engine,
            ws_urls=[cfg.ws_url(url) for url in cfg.urls] if len(cfg.urls) > 1 else [],
            screen_simulcast=cfg.screen_simulcast,
        )
        for w in range(n)
    ]


def _rates(progress: dict[int, dict[str, Any]], before: dict[int, dict[str, Any]]) -> dict[str, float]:
    """Packets/s out and in, interval loss and load-tool CPU %, each worker's deltas over its own clock."""
    tx = rx = lost = expected = cpu = 0.0
    for index, snap in progress.items():
        old = before.get(index)
        if old is None:
            old = {"at": snap.get("at", 0.0) - 1.0}
        dt = snap.get("at", 0.0) - old.get("at", 0.0)
        if dt <= 0:
            continue
        tx += (snap.get("tx_packets", 0) - old.get("tx_packets", 0)) / dt
        rx += (snap.get("rx_packets", 0) - old.get("rx_packets", 0)) / dt
        cpu += 100 * (snap.get("cpu_seconds", 0) - old.get("cpu_seconds", 0)) / dt
        lost += snap.get("delivery_lost", 0) - old.get("delivery_lost", 0)
        expected += snap.get("delivery_expected", 0) - old.get("delivery_expected", 0)
    return {"tx_pps": tx, "rx_pps": rx, "loss": min(1.0, max(0.0, lost / expected)) if expected > 0 else 0.0,
            "client_cpu_percent": cpu}


def _sum_progress(progress: dict[int, dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for snap in progress.values():
        for k, v in snap.items():
            if isinstance(v, (int, float)):
                if k == "max_lateness_ms":
                    total[k] = max(total.get(k, 0.0), v)
                else:
                    total[k] = total.get(k, 0.0) + v
    return total


class _Display:
    """The live progress table (rich), or nothing when quiet / not a terminal."""

    def __init__(self, cfg: LoadConfig) -> None:
        self.live = None
        self.cfg = cfg
        if cfg.quiet:
            return
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            return
        console = Console(stderr=True)
        self.live = Live(console=console, refresh_per_second=2, transient=False, auto_refresh=False)
        self.live.start()

    def update(self, point: dict[str, Any], total_users: int) -> None:
        if self.live is None:
            return
        from rich.table import Table

        table = Table(title=f"callsd loadtest → {self.cfg.http_base()}", show_header=True, expand=False)
        for col in ("elapsed", "joined", "failed", "pkts/s out", "pkts/s in", "loss", "server CPU", "server RSS"):
            table.add_column(col, justify="right")
        cpu = point.get("server_cpu_percent")
        rss = point.get("server_rss_bytes")
        table.add_row(
            f"{point['t']:.0f} s",
            f"{int(point['joined'])}/{total_users}",
            str(int(point["failed"])),
            f"{point['tx_pps']:.0f}",
            f"{point['rx_pps']:.0f}",
            f"{100 * point['loss']:.2f} %",
            "n/a" if cpu is None else f"{cpu:.0f} %",
            "n/a" if rss is None else f"{rss / 2**20:.0f} MiB",
        )
        self.live.update(table, refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def run(cfg: LoadConfig) -> dict[str, Any]:
    """Run the whole load test (blocking) and return the results document; writes ``cfg.output`` if set.

    Raises :class:`ServerUnreachable` before starting anything when the server does not answer.
    """
    preflight(cfg)
    ctx = multiprocessing.get_context("fork")
    q: Any = ctx.Queue()
    t0 = time.monotonic() + 0.3
    specs = _specs(cfg, t0)
    baseline, baseline_at = scrape_metrics(cfg)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    procs = [ctx.Process(target=worker_process_main, args=(spec_to_dict(s), q), daemon=True) for s in specs]
    for p in procs:
        p.start()
    display = _Display(cfg)
    total_users = cfg.calls * cfg.users_per_call
    progress: dict[int, dict[str, Any]] = {}
    results: dict[int, dict[str, Any]] = {}
    crashes: dict[int, str] = {}
    timeline: list[dict[str, Any]] = []
    scrapes: list[tuple[float, dict[str, float]]] = [(baseline_at - t0, baseline)]
    deadline = t0 + cfg.duration + cfg.join_timeout + 30
    next_sample = t0 + 1.0
    prev_by_worker: dict[int, dict[str, Any]] = {}
    try:
        while len(results) + len(crashes) < len(procs) and time.monotonic() < deadline:
            try:
                kind, index, payload = q.get(timeout=0.2)
                if kind == "progress":
                    progress[index] = payload
                elif kind == "result":
                    results[index] = payload
                else:
                    crashes[index] = payload.get("error", "crashed")
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and q.empty():
                    break
            now = time.monotonic()
            if now >= next_sample and now <= t0 + cfg.duration + 0.5:
                next_sample += 1.0
                t = now - t0
                tot = _sum_progress(progress)
                server = scrapes_append(scrapes, t0, cfg)
                rates = _rates(progress, prev_by_worker)
                prev_by_worker = {i: dict(snap) for i, snap in progress.items()}
                dt = max(1e-3, scrapes[-1][0] - scrapes[-2][0])
                point: dict[str, Any] = {
                    "t": round(t, 2),
                    "joined": tot.get("joined", 0),
                    "connected": tot.get("connected", 0),
                    "failed": tot.get("failed", 0),
                    **rates,
                }
                last = scrapes[-2][1] if len(scrapes) >= 2 else {}
                same = _same_process(last, server)
                if "cpu_seconds" in server and "cpu_seconds" in last and same:
                    point["server_cpu_percent"] = 100 * (server["cpu_seconds"] - last["cpu_seconds"]) / dt
                if "rss_bytes" in server:
                    point["server_rss_bytes"] = server["rss_bytes"]
                if "rtp_packets_out" in server and "rtp_packets_out" in last and same \
                        and server["rtp_packets_out"] >= last["rtp_packets_out"]:
                    point["server_egress_pps"] = (server["rtp_packets_out"] - last["rtp_packets_out"]) / dt
                timeline.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in point.items()})
                display.update(point, total_users)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        display.stop()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    # Drain what arrived after the loop, then name the workers that died without a word (a signal, a C crash).
    while True:
        try:
            kind, index, payload = q.get(timeout=0.1)
        except queue_mod.Empty:
            break
        if kind == "result":
            results[index] = payload
        elif kind == "crash":
            crashes[index] = payload.get("error", "crashed")
    for spec, p in zip(specs, procs, strict=True):
        if spec.index not in results and spec.index not in crashes:
            crashes[spec.index] = f"worker exited with code {p.exitcode} without a result"
    final, _ = scrape_metrics(cfg)
    doc = build_results(cfg, started_at, list(results.values()), crashes, timeline, scrapes, final)
    if cfg.output:
        with open(cfg.output, "w") as f:
            json.dump(doc, f, indent=1)
    return doc


def _steady(scrapes: list[tuple[float, dict[str, float]]], start: float, key: str,
            also: str = "") -> tuple[float, float] | None:
    """(delta of ``key``, seconds) over the scrapes at or after ``start`` (one server process at a time)."""
    return process_delta(scrapes, key, start=start, also=also)


def build_results(cfg: LoadConfig, started_at: str, workers: list[dict[str, Any]], crashes: dict[int, str],
                  timeline: list[dict[str, Any]], scrapes: list[tuple[float, dict[str, float]]],
                  final: dict[str, float]) -> dict[str, Any]:
    """Merge worker results into the results document (the format ``callsd loadtest plot`` reads)."""
    calls = sorted((c for w in workers for c in w["calls"]), key=lambda c: c["call"])
    joins = [x for w in workers for x in w["join_latencies_ms"]]
    jitters = [x for w in workers for x in w["jitter_ms"]]
    delay = Histogram()
    for w in workers:
        delay.merge(Histogram.from_json(w["delay_histogram"]))
    errors: dict[str, int] = {}
    for w in workers:
        for k, v in w["errors"].items():
            errors[k] = errors.get(k, 0) + v
    counters = _sum_progress({w["worker"]: w["counters"] for w in workers})
    expected = sum(c["expected"] for c in calls)
    lost = sum(c["lost"] for c in calls)
    rfc_expected = sum(c.get("rfc3550_expected", 0) for c in calls)
    rfc_lost = sum(c.get("rfc3550_lost", 0) for c in calls)
    e2e_expected = sum(c.get("e2e_expected", 0) for c in calls)
    e2e_lost = sum(c.get("e2e_lost", 0) for c in calls)
    users_total = cfg.calls * cfg.users_per_call
    failed = sum(c["failed"] for c in calls)
    joined = sum(c["joined"] for c in calls)
    missing_users = users_total - sum(c["users"] for c in calls)
    server: dict[str, Any] = {"metrics": bool(final) or any(s for _, s in scrapes)}
    run_seconds = (scrapes[-1][0] - scrapes[0][0]) if scrapes else 0.0
    whole = process_delta(scrapes, "cpu_seconds")
    if whole is not None and run_seconds > 0:
        # Counted only between scrapes of one process: a restart never makes it negative (the run is invalid).
        server["cpu_seconds"] = round(whole[0], 3)
        server["cpu_percent"] = round(100 * whole[0] / whole[1], 1) if whole[1] > 0 else None
    rss = [s["rss_bytes"] for _, s in scrapes if "rss_bytes" in s]
    if rss:
        server.update(rss_bytes_start=int(rss[0]), rss_bytes_end=int(rss[-1]), rss_bytes_max=int(max(rss)))
        if joined:
            server["rss_bytes_per_session"] = int((max(rss) - rss[0]) / joined)
    steady_from = cfg.join_duration + 1.0
    joining = process_delta(scrapes, "cpu_seconds", end=steady_from)
    if joining is not None and joined:
        # Server CPU while users were joining, per joined user (signaling, negotiation, ICE/DTLS, early media).
        server["join_cpu_ms_per_user"] = round(1000 * joining[0] / joined, 2)
    cpu = _steady(scrapes, steady_from, "cpu_seconds")
    if cpu and cpu[1] > 0:
        server["steady_cpu_percent"] = round(100 * cpu[0] / cpu[1], 1)
        server["steady_seconds"] = round(cpu[1], 2)
    server["metrics_missed"] = sum(1 for _, s in scrapes if "rtp_packets_out" not in s)
    for kind in ("calls", "sessions"):  # the most each media host held at once (workers or rtcd hosts)
        per_host: dict[str, int] = {}
        for _, sample in scrapes:
            for key, value in sample.items():
                if key.startswith(f"host_{kind}/"):
                    host = key.split("/", 1)[1]
                    per_host[host] = max(per_host.get(host, 0), int(value))
        if per_host:
            server[f"{kind}_per_host"] = dict(sorted(per_host.items()))
    egress = _steady(scrapes, steady_from, "rtp_packets_out", also="cpu_seconds")
    if egress is not None:
        cpu = _steady(scrapes, steady_from, "cpu_seconds", also="rtp_packets_out")
    source = "metrics"
    if egress is None or egress[0] <= 0:
        # No egress counter: what the users received is what the server sent, minus loss.
        window = [p for p in timeline if p["t"] >= steady_from]
        if window:
            egress = (sum(p["rx_pps"] for p in window), float(len(window)))
            source = "clients"
    if egress and egress[1] > 0:
        server["steady_egress_pps"] = round(egress[0] / egress[1], 1)
        server["egress_source"] = source
        if cpu and cpu[1] > 0 and egress[0] > 0:
            server["us_cpu_per_egress_packet"] = round(1e6 * cpu[0] / (egress[0] * cpu[1] / egress[1]), 2)
    if cfg.screen_simulcast and scrapes:  # per layer, from the server's counters (simulcast.py)
        server["simulcast_layers"] = simulcast.layer_report(scrapes[0][1], final or scrapes[-1][1],
                                                            run_seconds or cfg.duration)
    invalid = validity(scrapes, final)
    return {
        "simulcast_receivers": simulcast.receivers_summary(
            [r for w in workers for r in w.get("simulcast_receivers", [])]),
        "tool": "callsd loadtest",
        "format": 1,
        "started_at": started_at,
        "valid": not invalid,
        "invalid_reasons": invalid,
        "config": {k: v for k, v in _config_dict(cfg).items() if k != "token_secret"},
        "users": {"total": users_total, "joined": joined, "failed": failed + missing_users,
                  "connected": sum(c["connected"] for c in calls), "errors": errors,
                  "reconnects": sum(w.get("reconnects", 0) for w in workers),
                  # server answers that kept a user's inactive camera section (sdp.camera_slot_kept): one per
                  # join of a user without a camera, as a browser's first offer is answered
                  "camera_slot_answers": sum(w.get("camera_slot_answers", 0) for w in workers),
                  "worker_crashes": {str(k): v for k, v in crashes.items()},
                  "failure_samples": [x for w in workers for x in w.get("failure_samples", [])][:5],
                  "per_url": _per_url(workers)},
        "overall": {
            "packets_sent": int(counters.get("tx_packets", 0)),
            "packets_received": int(counters.get("rx_packets", 0)),
            # SRTP-authenticated (1 in --delay-sample): the rest were counted from their RTP header alone
            "packets_verified": int(counters.get("rx_verified", 0)),
            "rtcp_received": int(counters.get("rx_rtcp", 0)),
            "expected": expected,
            "lost": lost,
            "loss": (lost / expected) if expected else 0.0,
            "rfc3550_expected": rfc_expected,
            "rfc3550_lost": rfc_lost,
            "rfc3550_loss": (rfc_lost / rfc_expected) if rfc_expected else 0.0,
            "e2e_expected": e2e_expected,
            "e2e_lost": e2e_lost,
            "e2e_loss": (e2e_lost / e2e_expected) if e2e_expected else 0.0,
            "audio_streams_expected": sum(c["audio_streams_expected"] for c in calls),
            "audio_streams_received": sum(c["audio_streams_received"] for c in calls),
            "jitter_ms": summarize(jitters),
            "delay_ms": {"count": delay.count, "mean": round(delay.total / delay.count, 3) if delay.count else None,
                         "p50": delay.quantile(0.5), "p95": delay.quantile(0.95), "p99": delay.quantile(0.99),
                         "max": round(delay.maximum, 3) if delay.count else None},
            "socket_drops": {
                "client": sum(w.get("socket_drops", {}).get("client", 0) for w in workers),
                "server": max((w.get("socket_drops", {}).get("server", 0) for w in workers), default=0),
            },
            "srtp_errors": int(counters.get("srtp_errors", 0)),
            "send_drops": int(counters.get("send_drops", 0)),
        },
        "join_to_first_audio_ms": summarize(joins),
        "join_latencies_ms": joins,
        "join_phases_ms": {
            phase: summarize([x for w in workers for x in w.get("join_phases_ms", {}).get(phase, [])])
            for phase in ("websocket_open", "join_ack", "sdp_answer", "media_connected")
        },
        "host": {"cpus": os.cpu_count(), "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "calls": calls,
        "server": server,
        "client": {"processes": len(workers) + len(crashes),
                   "cpu_seconds": round(sum(w["cpu_seconds"] for w in workers), 3),
                   "late_ticks": int(counters.get("late_ticks", 0)),
                   "max_tick_lateness_ms": counters.get("max_lateness_ms", 0.0)},
        "timeline": timeline,
    }


def _per_url(workers: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Users, joined and connected per URL (several ``--url``: the users each node took), summed over workers."""
    merged: dict[str, dict[str, int]] = {}
    for w in workers:
        for url, counts in w.get("per_url", {}).items():
            into = merged.setdefault(url, {"users": 0, "joined": 0, "connected": 0})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + value
    return merged


def _config_dict(cfg: LoadConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def print_summary(doc: dict[str, Any], stream: Any = None) -> None:
    """A few human lines after the run (the JSON has everything)."""
    out = stream or sys.stdout
    u, o, s = doc["users"], doc["overall"], doc["server"]
    j = doc["join_to_first_audio_ms"]
    print(f"users: {u['joined']}/{u['total']} joined, {u['failed']} failed {u['errors'] or ''}".rstrip(), file=out)
    if len(u.get("per_url", {})) > 1:
        for url, c in sorted(u["per_url"].items()):
            print(f"  {url}: {c['users']} users, {c['joined']} joined, {c['connected']} connected", file=out)
    for index, why in u["worker_crashes"].items():
        print(f"load process {index} failed: {why}", file=out)
    for why in doc.get("invalid_reasons", []):
        print(f"INVALID RUN: {why}", file=out)
    print(f"packets: {o['packets_sent']} sent, {o['packets_received']} received"
          f" ({o['packets_verified']} SRTP-verified, {o['packets_received'] - o['packets_verified'] - o['srtp_errors']} counted by"
          f" header only: --delay-sample {doc['config']['delay_sample']}), loss {100 * o['loss']:.3f} %"
          f" ({o['lost']}/{o['expected']} from the senders' side; RFC 3550 {100 * o['rfc3550_loss']:.3f} %,"
          f" end to end {100 * o['e2e_loss']:.3f} %), audio streams {o['audio_streams_received']}/"
          f"{o['audio_streams_expected']}; kernel socket drops: load tool {o['socket_drops']['client']},"
          f" server {o['socket_drops']['server']}", file=out)
    d = o["delay_ms"]
    print(f"delay ms: p50 {d['p50']} p95 {d['p95']} max {d['max']}; jitter ms p95 {o['jitter_ms']['p95']}; "
          f"join→first audio ms: p50 {j['p50']} p95 {j['p95']} (n={j['count']})", file=out)
    if s.get("cpu_seconds") is not None:
        print(f"server: {s['cpu_seconds']} CPU s ({s.get('cpu_percent')} %), steady {s.get('steady_cpu_percent')} %,"
              f" egress {s.get('steady_egress_pps')} pkt/s, {s.get('us_cpu_per_egress_packet')} µs/egress pkt,"
              f" RSS max {s.get('rss_bytes_max', 0) / 2**20:.1f} MiB", file=out)
    else:
        print("server: /metrics not reachable (no CPU figures)", file=out)
    for row in s.get("simulcast_layers", []):
        print(f"simulcast layer {row['layer']} ({row['rid']}): in {row['packets_in']} pkts {row['kbps_in']} kbit/s,"
              f" forwarded {row['packets_out']} pkts {row['kbps_out']} kbit/s", file=out)
    if s.get("calls_per_host"):
        print("calls per media host: " + ", ".join(f"{h} {n}" for h, n in s["calls_per_host"].items()), file=out)
