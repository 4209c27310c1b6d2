"""Run one fuzz target under atheris (libFuzzer with Python coverage): ``python fuzz/run.py TARGET [libFuzzer args]``.

Examples::

    python fuzz/run.py rtp -runs=20000 fuzz/corpus/rtp               # bounded, seeds read from the repo corpus
    python fuzz/run.py sdp -max_total_time=600 /tmp/work fuzz/corpus/sdp   # long run; new inputs go to /tmp/work

libFuzzer writes new interesting inputs into the FIRST corpus directory given, and a crashing input to
``-artifact_prefix`` (default: the current directory) as ``crash-<sha1>``; that file is the reproducer:
``python fuzz/run.py TARGET crash-<sha1>`` runs it once. Keep it: copy it into ``fuzz/corpus/TARGET/`` once the
parser is fixed, so every later run replays it. ``make fuzz`` runs every target for ``FUZZ_SECONDS`` each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(f"usage: {argv[0]} TARGET [libFuzzer args...]")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with atheris.instrument_imports(include=["callsd", "aioice", "targets"]):
        import targets
    name = argv[1]
    if name not in targets.TARGETS:
        raise SystemExit(f"unknown target {name!r}; choose from {', '.join(targets.TARGETS)}")
    atheris.Setup([argv[0], *argv[2:]], targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
