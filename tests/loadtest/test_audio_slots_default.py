"""The load tool negotiates as the web client does: it asks for as many audio slots (ADR 0020) as app/static/media.js.

Why: with the tool asking for none, every join made each participant already in the call renegotiate (5.38
offer/answer rounds per join in 8-user calls instead of 2.0), so the capacity bench loaded the server unlike real
users and its p95 join → first audio measured a negotiation browsers never make."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from callsd.app import cmd_loadtest
from callsd.app.loadtest.runner import WEB_CLIENT_AUDIO_SLOTS, LoadConfig

MEDIA_JS = Path(cmd_loadtest.__file__).resolve().parent / "static" / "media.js"


def _web_client_audio_slots() -> int:
    found = re.findall(r"^const AUDIO_SLOTS = (\d+);$", MEDIA_JS.read_text(), flags=re.MULTILINE)
    assert len(found) == 1, f"{MEDIA_JS} should declare `const AUDIO_SLOTS = N;` once, found {found}"
    return int(found[0])


def _config_from(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> LoadConfig:
    """The ``LoadConfig`` that ``callsd loadtest ARGV`` runs with (the run itself replaced)."""
    seen: list[LoadConfig] = []

    def capture(cfg: LoadConfig) -> dict[str, object]:
        seen.append(cfg)
        raise KeyboardInterrupt  # stop before anything is started

    monkeypatch.setattr("callsd.app.loadtest.runner.run", capture)
    parser = argparse.ArgumentParser()
    cmd_loadtest.add_arguments(parser)
    assert cmd_loadtest.run(parser.parse_args(argv)) == 130
    return seen[0]


def test_the_tools_default_is_the_web_clients_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _web_client_audio_slots() == WEB_CLIENT_AUDIO_SLOTS == LoadConfig().audio_slots
    assert _config_from([], monkeypatch).audio_slots == WEB_CLIENT_AUDIO_SLOTS


def test_zero_still_asks_for_one_section_per_track(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _config_from(["--audio-slots", "0"], monkeypatch).audio_slots == 0
    assert _config_from(["--audio-slots", "3"], monkeypatch).audio_slots == 3
