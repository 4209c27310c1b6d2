"""Where the browser tests write their screenshots, and the accessibility check they run (axe-core).

Screenshots go to ``$CALLSD_SCREENSHOT_DIR`` (``CALLSD_SCREENSHOT_DIR=docs/client`` refreshes the set committed
under docs/client/), else to a folder in the system temp directory, so an ordinary test run leaves the tree clean.

``axe_violations(page)`` injects the vendored axe-core (tests/fixtures/axe.min.js, see docs/client.md for its version
and licence; no CDN) and returns the serious and critical violations of the page as it is.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "fixtures" / "axe.min.js"


def shot_path(name: str) -> Path:
    folder = Path(os.environ.get("CALLSD_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "callsd-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on ``page``: ``[{id, impact, help, targets}]``."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
                id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map(n => n.target.join(' ')).slice(0, 5),
            }));
        }"""
    )
    return list(result)
