"""The cluster: several ``callsd serve`` nodes on one PostgreSQL log (docs/cluster.md, docs/adr/0017).

- ``directory``  the nodes and who owns which call, as the database says (blocking SQL run in worker threads);
- ``host``       one call hosted on this node: its fenced log stream, recorder, hub and lease keeper;
- ``link``       the node-to-node relay link's wire rules (authentication, the epoch on every frame);
- ``front``      one client socket on this node: greet it, learn its channel, pipe it to the call's owner;
- ``node``       this node: the calls it hosts, routing a channel to its owner, the media plane's events, counters.
"""
