"""Peers side by side: Janus (Debian's package, VideoRoom) and callsd on one pinned core, driven by the same load
tool engine in network namespaces, so the ratio is measured, not remembered (issue 13; docs/performance.md,
"Janus side by side").

Modules: ``netns`` (the server's and the tool's namespaces, a veth pair, kernel counters), ``janus`` (install,
configure, start Janus), ``callsd_server`` (``callsd serve`` in the same place), ``videoroom`` (the VideoRoom
driver on ``callsd.peer``), ``drive`` (the load process: Janus or callsd, progress as JSON lines), ``__main__``
(the alternated sweep, its results file, table and plot; ``--smoke`` for a quick check of Janus).
"""
