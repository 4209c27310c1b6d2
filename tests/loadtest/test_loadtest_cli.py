"""`callsd loadtest` as a user meets it: bad flags and an unreachable server give one clear line, and `plot`
turns a results file into a PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from callsd.app.cli import main
from net_support import free_port


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calls", "0"], "--calls: must be at least 1"),
        (["--calls", "two"], "expected a whole number"),
        (["--users-per-call", "3", "--unmuted", "4"], "--unmuted (4) cannot exceed --users-per-call (3)"),
        (["--calls", "2", "--screen-sharing", "3"], "--screen-sharing (3) cannot exceed --calls (2)"),
        (["--duration", "5s", "--join-duration", "10s"], "--join-duration (10s) must be shorter than --duration"),
        (["--duration", "soon"], "expected a duration"),
        (["--calls", "2", "--processes", "3"], "--processes (3) cannot exceed --calls (2)"),
        (["--url", "127.0.0.1:8080"], "--url must be an http(s):// or ws(s):// URL"),
        (["--screen-bitrate", "fast"], "expected a bitrate"),
    ],
)
def test_bad_flags_are_clear_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["loadtest", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_unreachable_server_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", f"http://127.0.0.1:{port}",
         "--duration", "3", "--join-duration", "1", "--output", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"callsd loadtest: cannot reach the server at http://127.0.0.1:{port}")
    assert not (tmp_path / "r.json").exists()


def _results_doc() -> dict[str, object]:
    timeline = [
        {"t": float(t), "joined": min(6, 2 * t), "connected": min(6, 2 * t), "failed": 0, "tx_pps": 100.0,
         "rx_pps": 200.0, "loss": 0.0, "client_cpu_percent": 5.0, "server_cpu_percent": 10.0 + t,
         "server_rss_bytes": 50e6, "server_egress_pps": 200.0}
        for t in range(1, 8)
    ]
    return {
        "tool": "callsd loadtest", "format": 1, "config": {"calls": 2, "users_per_call": 3, "unmuted": 1,
                                                           "screen_sharing": 0},
        "overall": {"loss": 0.0}, "timeline": timeline, "join_latencies_ms": [40.0, 55.0, 61.0, 80.0],
        "join_to_first_audio_ms": {"p50": 58.0, "p95": 78.0, "count": 4},
    }


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results_doc()))
    png = tmp_path / "report.png"
    assert main(["loadtest", "plot", str(results), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().out


def test_plot_of_a_file_that_is_not_results_is_a_clear_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text("[1, 2]")
    assert main(["loadtest", "plot", str(bogus), "-o", str(tmp_path / "x.png")]) == 2
    assert "is not a callsd loadtest results file" in capsys.readouterr().err
    assert main(["loadtest", "plot", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
