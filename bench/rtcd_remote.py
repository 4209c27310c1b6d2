"""µs of CPU per egress packet: one rtcd host driven remotely (``rtc.rtcd_url``) vs the integrated plane, same shape,
same run, the two modes alternated (docs/performance.md, "Remote rtcd host").

    python -m bench.rtcd_remote --calls 20 --users 8 --unmuted 2 --duration 20 --rounds 3

Starts ``callsd rtcd`` on 127.0.0.2 and two ``callsd serve`` (integrated; remote on that rtcd); runs
``callsd loadtest`` against each in turn; the media process's CPU and RTP egress counters are read from its
``/metrics`` before and after each run (the integrated serve's, or the rtcd's ``callsd_rtcd_*``); the remote
serve's own CPU (signaling only) is reported apart. Loopback only; ephemeral ports.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rtcd_support import CLIENT, KEY, RtcdProcess, free_port  # noqa: E402

_CPU = re.compile(r"^(\w*process_cpu_seconds_total) (\S+)$", re.M)
_OUT = re.compile(r'^\w*rtc_rtp_packets_total\{direction="out",type="rtp"\} (\S+)$', re.M)


def scrape(url: str, auth: str | None = None) -> tuple[float, float]:
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    with urllib.request.urlopen(req, timeout=10) as answer:
        text = answer.read().decode()
    cpu = float(_CPU.search(text).group(2))  # type: ignore[union-attr]
    out = _OUT.search(text)
    return cpu, float(out.group(1)) if out else 0.0


def start_serve(tmp: Path, name: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port("127.0.0.1")
    e = dict(os.environ, CALLSD_HTTP_PORT=str(port), CALLSD_STORE_DATA_DIR=str(tmp / name),
             CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_LOG_LEVEL="warning", **env)
    proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], env=e, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "w"))  # noqa: SIM115
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"serve {name} did not start: {(tmp / f'{name}.log').read_text()[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--unmuted", type=int, default=2)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="callsd-rtcd-bench-"))
    rtcd = RtcdProcess(tmp, "127.0.0.2")
    rtcd.start()
    rtcd.register()
    integrated, i_port = start_serve(tmp, "integrated")
    remote, r_port = start_serve(tmp, "remote", CALLSD_RTC_RTCD_URL=f"http://127.0.0.2:{rtcd.port}",
                                 CALLSD_RTC_RTCD_CLIENT_ID=CLIENT, CALLSD_RTC_RTCD_AUTH_KEY=KEY)
    basic = "Basic " + base64.b64encode(f"{CLIENT}:{KEY}".encode()).decode()
    rows: list[dict[str, Any]] = []
    try:
        for rnd in range(args.rounds):
            for mode in ("integrated", "remote"):
                port = i_port if mode == "integrated" else r_port
                media_url, auth = ((f"http://127.0.0.1:{i_port}/metrics", None) if mode == "integrated"
                                   else (f"{rtcd.base}/metrics", basic))
                load0 = os.getloadavg()[0]
                cpu0, out0 = scrape(media_url, auth)
                serve0 = scrape(f"http://127.0.0.1:{r_port}/metrics")[0]
                results = tmp / f"{mode}-{rnd}.json"
                run = subprocess.run(
                    [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", f"http://127.0.0.1:{port}",
                     "--calls", str(args.calls), "--users-per-call", str(args.users), "--unmuted", str(args.unmuted),
                     "--duration", str(args.duration), "--join-duration", "3", "--output", str(results), "--quiet"],
                    capture_output=True, text=True, cwd=tmp)
                cpu1, out1 = scrape(media_url, auth)
                serve1 = scrape(f"http://127.0.0.1:{r_port}/metrics")[0]
                doc = json.loads(results.read_text()) if results.exists() else {}
                egress = out1 - out0
                row = {"round": rnd, "mode": mode, "egress_packets": int(egress),
                       "media_cpu_s": round(cpu1 - cpu0, 2),
                       "us_per_egress_packet": round(1e6 * (cpu1 - cpu0) / egress, 2) if egress else None,
                       "remote_serve_cpu_s": round(serve1 - serve0, 2) if mode == "remote" else None,
                       "loss": doc.get("overall", {}).get("loss"), "loadtest_rc": run.returncode,
                       "loadavg_1m_before": round(load0, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for proc in (integrated, remote):
            proc.terminate()
            proc.wait(20)
        rtcd.stop()
    for mode in ("integrated", "remote"):
        values = sorted(r["us_per_egress_packet"] for r in rows if r["mode"] == mode and r["us_per_egress_packet"])
        if values:
            print(f"{mode}: median {values[len(values) // 2]} µs/egress packet over {len(values)} runs ({values})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
