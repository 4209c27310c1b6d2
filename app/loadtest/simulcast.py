"""Simulcast screens for the load tool (``callsd loadtest --screen-simulcast``): the layers a sharer sends, and the
per-layer figures of the results.

A screen-sharing user with ``--screen-simulcast`` publishes its screen as three layers in one m-section, as
Chromium does (``a=rid:q/h/f send``, ``a=simulcast:send q;h;f``, the RID header extension on every packet, no
``a=ssrc`` lines): q at a quarter of ``--screen-bitrate``, h at half, f at the full rate, each its own SSRC with a
key frame every 2 s (the server switches a receiver's layer only on one). The server forwards one layer per
receiver, so the layers are left out of the loss figure (a receiver that gets q "misses" every packet of f); what
is reported instead:

- ``server.simulcast_layers``: per layer (0 = q), the packets and bitrate the server received and forwarded over
  the run, from its ``/metrics`` (``callsd_rtc_simulcast_packets_total``/``_bytes_total``);
- ``simulcast_receivers``: how many screen packets each receiving user got (count, min, mean, max).
"""

from __future__ import annotations

from typing import Any

from callsd.peer.source import Source

__all__ = ["LAYERS", "LAYER_SOURCE_FLAG", "RID_URI", "layer_sources", "offer_lines", "metric_key",
           "layer_report", "received_per_receiver", "receivers_summary"]

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RID_EXT_ID = 10
LAYERS = (("q", 4), ("h", 2), ("f", 1))  # rid, bitrate divisor (lowest first, as the web client lists them)
# A layer's stamp id: this flag | user number << 2 | layer. Not in the engine's sources, so out of the delivery
# (loss) count; a receiver's stream restarts its end-to-end count at each switch (a new sender on its SSRC).
LAYER_SOURCE_FLAG = 1 << 30


def layer_sources(*, user_number: int, bitrate: int, ssrcs: list[int], seeds: list[int]) -> list[Source]:
    """The three layer sources of one simulcast screen (SSRCs and seeds given: they are random in a worker)."""
    out: list[Source] = []
    for (rid, divisor), ssrc, seed in zip(LAYERS, ssrcs, seeds, strict=True):
        source = Source(kind="video", ssrc=ssrc, user_number=user_number, bitrate=max(40_000, bitrate // divisor),
                        seed=seed, index=2)
        source.source_id = LAYER_SOURCE_FLAG | (user_number << 2) | len(out)
        source.rid = rid
        source.enabled = True
        out.append(source)
    return out


def offer_lines() -> list[str]:
    """The lines of a simulcast video m-section (the RID extension, its streams, the simulcast attribute)."""
    rids = [rid for rid, _ in LAYERS]
    return [f"a=extmap:{RID_EXT_ID} {RID_URI}", *(f"a=rid:{rid} send" for rid in rids),
            "a=simulcast:send " + ";".join(rids)]


def metric_key(name: str, labels: dict[str, str]) -> str | None:
    """The flat key of one ``/metrics`` sample of the per-layer counters, or None for other samples."""
    for kind in ("packets", "bytes"):
        if name.endswith(f"rtc_simulcast_{kind}_total") and "layer" in labels and "direction" in labels:
            return f"simulcast_{kind}_{labels['direction']}_l{labels['layer']}"
    return None


def layer_report(first: dict[str, float], last: dict[str, float], seconds: float) -> list[dict[str, Any]]:
    """Per layer: packets and kbit/s received from publishers and forwarded to receivers between two scrapes."""
    out = []
    for layer in range(len(LAYERS)):
        row: dict[str, Any] = {"layer": layer, "rid": LAYERS[layer][0]}
        for direction in ("in", "out"):
            packets = last.get(f"simulcast_packets_{direction}_l{layer}", 0.0) - first.get(
                f"simulcast_packets_{direction}_l{layer}", 0.0)
            octets = last.get(f"simulcast_bytes_{direction}_l{layer}", 0.0) - first.get(
                f"simulcast_bytes_{direction}_l{layer}", 0.0)
            row[f"packets_{direction}"] = int(packets)
            row[f"kbps_{direction}"] = round(octets * 8 / seconds / 1000, 1) if seconds > 0 else None
        out.append(row)
    return out


def received_per_receiver(users: list[Any]) -> list[dict[str, int]]:
    """Per user that received a simulcast screen: its packets of it (over all its legs) and the layer it was on
    last (read from the stamp of its last sampled packet)."""
    out = []
    for u in users:
        streams = [st for leg in u.legs for st in leg.streams.values()
                   if st.sender >= 0 and st.sender & LAYER_SOURCE_FLAG]
        if streams:
            out.append({"packets": sum(st.received for st in streams), "layer": streams[-1].sender & 3})
    return out


def receivers_summary(rows: list[dict[str, int]]) -> dict[str, Any]:
    """Count, min/mean/max packets, and how many receivers ended on each layer."""
    if not rows:
        return {"count": 0}
    counts = [r["packets"] for r in rows]
    layers: dict[str, int] = {}
    for r in rows:
        layers[LAYERS[r["layer"]][0]] = layers.get(LAYERS[r["layer"]][0], 0) + 1
    return {"count": len(rows), "packets_min": min(counts), "packets_mean": round(sum(counts) / len(counts), 1),
            "packets_max": max(counts), "last_layer": layers}
