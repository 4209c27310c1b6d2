"""Stopping a child process the tests started (a server, coturn, rtcd, a load tool): one way, bounded in time.

A test must not leave a process behind, nor hang on one: ``terminate`` asks it to stop with the signal its role
wants (SIGTERM; SIGINT for a callsd server, which then exits without draining), waits ``timeout`` seconds, then
SIGKILLs it, and always reaps it. Kept free of pytest so the namespace client scripts can import the helpers that
use it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["terminate", "tail", "log_tails_on_failure"]

KILLED_WAIT = 10.0  # a SIGKILLed process is gone at once; a bound all the same, so nothing can hang a test


def terminate(proc: subprocess.Popen[Any], timeout: float = 10.0, *, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` to ``proc`` if it still runs, SIGKILL it after ``timeout`` seconds, reap it; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=KILLED_WAIT)
    return proc.returncode


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a process log, for a failure message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@contextlib.contextmanager
def log_tails_on_failure(logs: Mapping[str, Path], lines: int = 40) -> Iterator[None]:
    """Add each named process log's tail to a failure raised inside (what the servers did, not only what the test
    saw); a nursery's exception group carries them too."""
    try:
        yield
    except Exception as exc:
        exc.add_note("\n".join(f"--- {name} ({path})\n{tail(path, lines)}" for name, path in logs.items()))
        raise
