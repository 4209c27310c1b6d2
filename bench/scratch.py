"""A bench's scratch directory: removed when the bench ends well, kept (and named on stderr) when it fails.

Benches start servers with data directories and logs of their own. Left behind, they piled up in /tmp by the
hundred (every CI run ran a few benches); kept only on failure, they are still there when someone needs a log.
A run that ends without an exception but with a failure it reports (users that did not join) keeps its
directory too: its result names the files there (``Scratch.keep``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Scratch", "scratch_dir"]


@dataclass(slots=True)
class Scratch:
    path: Path
    kept: str = ""  # why the directory stays after the block (empty: it is removed)

    def keep(self, why: str) -> None:
        self.kept = why


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Scratch]:
    """A new directory under the temp dir, named ``prefix`` + a random suffix, removed unless the block raised or
    kept it."""
    scratch = Scratch(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield scratch
    except BaseException:
        print(f"{prefix.rstrip('-')}: kept {scratch.path} for its logs", file=sys.stderr)
        raise
    if scratch.kept:
        print(f"{prefix.rstrip('-')}: kept {scratch.path} ({scratch.kept})", file=sys.stderr)
    else:
        shutil.rmtree(scratch.path, ignore_errors=True)
