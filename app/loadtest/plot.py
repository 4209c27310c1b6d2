"""``callsd loadtest plot results.json -o report.png``: one PNG with four panels (matplotlib, Agg backend).

Panels: server and client CPU % over time; packets/s out (users' sends), in (users' receipts) and the server's RTP
egress when scraped; loss % per one-second interval; the histogram of join-to-first-audio latencies.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["plot_results", "load_results"]


def load_results(path: str) -> dict[str, Any]:
    """Read a results JSON written by ``callsd loadtest --output``; ``ValueError`` with a clear message if not."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("tool") != "callsd loadtest" or "timeline" not in doc:
        raise ValueError(f"{path} is not a callsd loadtest results file")
    return doc


def plot_results(doc: dict[str, Any], output: str) -> None:
    """Render ``doc`` (a results document) to the PNG file ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = doc["timeline"]
    t = [p["t"] for p in timeline]
    cfg = doc.get("config", {})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    fig.suptitle(
        f"callsd loadtest: {cfg.get('calls')} calls × {cfg.get('users_per_call')} users, "
        f"{cfg.get('unmuted')} unmuted/call, {cfg.get('screen_sharing')} sharing — "
        f"loss {100 * doc['overall']['loss']:.3f} %"
    )
    ax = axes[0][0]
    server_cpu = [(p["t"], p["server_cpu_percent"]) for p in timeline if "server_cpu_percent" in p]
    if server_cpu:
        ax.plot([x for x, _ in server_cpu], [y for _, y in server_cpu], label="server")
    ax.plot(t, [p.get("client_cpu_percent", 0) for p in timeline], label="load tool", linestyle="--")
    ax.set_title("CPU (% of one core)")
    ax.set_xlabel("s")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)

    ax = axes[0][1]
    ax.plot(t, [p["tx_pps"] for p in timeline], label="users sent")
    ax.plot(t, [p["rx_pps"] for p in timeline], label="users received")
    egress = [(p["t"], p["server_egress_pps"]) for p in timeline if "server_egress_pps" in p]
    if egress:
        ax.plot([x for x, _ in egress], [y for _, y in egress], label="server RTP out", linestyle=":")
    ax.set_title("packets/s")
    ax.set_xlabel("s")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)

    ax = axes[1][0]
    ax.plot(t, [100 * p["loss"] for p in timeline], color="tab:red")
    ax.set_title("loss per second (%)")
    ax.set_xlabel("s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)

    ax = axes[1][1]
    joins = doc.get("join_latencies_ms", [])
    if joins:
        ax.hist(joins, bins=min(50, max(5, len(joins) // 3)), color="tab:green")
    j = doc.get("join_to_first_audio_ms", {})
    ax.set_title(f"join → first audio (ms): p50 {j.get('p50')}, p95 {j.get('p95')}, n={j.get('count')}")
    ax.set_xlabel("ms")
    ax.set_ylabel("users")
    ax.grid(alpha=0.3)

    fig.tight_layout()
    fig.savefig(output, dpi=90)
    plt.close(fig)
