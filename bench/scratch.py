"""A bench's scratch directory: removed when the bench ends well, kept (and named on stderr) when it fails.

Benches start servers with data directories and logs of their own. Left behind, they piled up in /tmp by the
hundred (every CI run ran a few benches); kept only on failure, they are still there when someone needs a log.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["scratch_dir"]


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A new directory under the temp dir, named ``prefix`` + a random suffix, removed unless the block raised."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        print(f"{prefix.rstrip('-')}: kept {path} for its logs", file=sys.stderr)
        raise
    shutil.rmtree(path, ignore_errors=True)
