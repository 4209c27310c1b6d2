"""The cluster bench's figure (bench/cluster_failover.py): failover per run and its distribution, and join latency
on the owner vs through a relaying node. One PNG, matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = doc["failover"]["runs"]
    lease = doc["lease_seconds"]
    fig, (per_run, cdf, joins) = plt.subplots(1, 3, figsize=(15, 4.6))
    index = [r["index"] + 1 for r in runs]
    survivors = [r["first_audio_s"][1:] for r in runs]
    per_run.scatter([i for i, s in zip(index, survivors, strict=True) for _ in s], [x for s in survivors for x in s],
                    s=18, label="first audio, users on surviving nodes")
    per_run.scatter(index, [r["first_audio_s"][0] for r in runs], s=18, marker="x",
                    label="first audio, user of the killed node")
    per_run.plot(index, [r["everyone_s"] for r in runs], color="grey", lw=1, label="everyone hears everyone")
    per_run.axhline(lease, color="red", ls="--", lw=1, label=f"lease ({lease:g} s)")
    per_run.set(xlabel="run", ylabel="seconds after kill -9 of the owner", title="Failover per run")
    per_run.set_ylim(bottom=0)
    per_run.legend(fontsize=7, loc="lower right")

    def ecdf(values: list[float], label: str) -> None:
        ordered = sorted(values)
        cdf.step(ordered, [(k + 1) / len(ordered) for k in range(len(ordered))], where="post", label=label)

    ecdf([x for s in survivors for x in s], "first audio, surviving nodes' users")
    ecdf([r["first_audio_s"][0] for r in runs], "first audio, killed node's user")
    ecdf([r["everyone_s"] for r in runs], "everyone hears everyone")
    cdf.axvline(lease, color="red", ls="--", lw=1)
    cdf.set_ylim(0, 1.02)
    cdf.set(xlabel="seconds after kill -9 of the owner", ylabel="fraction of runs",
            title=f"Failover distribution ({len(runs)} runs)")
    cdf.legend(fontsize=7, loc="lower right")

    samples = doc["joins"]["latency_ms_samples"]
    joins.boxplot([samples["owner"], samples["relayed"]], showfliers=True)
    joins.set_xticks([1, 2], [f"on the owner\n(CPU {doc['joins']['owner']['cpu_ms_per_join_all_nodes']['median']:.1f}"
                              " ms/join)",
                              f"through a relaying node\n(CPU "
                              f"{doc['joins']['relayed']['cpu_ms_per_join_all_nodes']['median']:.1f} ms/join)"])
    joins.set(ylabel="join → join_ack (ms)", title="Join latency (CPU: all nodes, median of batches)")
    load = doc["conditions_before"]["load_average"][0], doc["conditions_after"]["load_average"][0]
    fig.suptitle(f"callsd cluster: 3 nodes on loopback, PostgreSQL, lease {lease:g} s; "
                 f"{doc['conditions_before']['at_utc']}, {doc['conditions_before']['cpus']} CPUs shared, "
                 f"load average {load[0]:.1f} → {load[1]:.1f}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
