"""The media process's runtime settings (app/gc_tuning.py, ADR 0029): read from ``[rtc]`` and the environment,
applied to the collector once start-up is over, and ``rtc.coalesce_ms`` reaching the UDP endpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.app.config import ConfigError, load_config

_APPLY = """
import gc, json, os
from callsd.app.config import load_config
from callsd.app.gc_tuning import apply_gc_tuning
before = gc.get_threshold()
tuning = apply_gc_tuning(load_config(None, os.environ).rtc)
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "reported": [tuning.threshold, tuning.frozen]}))
"""


def _apply(env: dict[str, str]) -> dict[str, list[int] | int | list[list[int] | int]]:
    import json

    out = subprocess.run([sys.executable, "-c", _APPLY], env=env, capture_output=True, text=True, timeout=60,
                         check=True)
    result: dict[str, list[int] | int | list[list[int] | int]] = json.loads(out.stdout)
    return result


def test_the_defaults_freeze_and_keep_full_collections_as_rare_as_before() -> None:
    rtc = load_config(None, {}).rtc
    assert (rtc.gc_freeze, rtc.gc_gen0_threshold, rtc.gc_gen1_threshold, rtc.gc_gen2_threshold, rtc.coalesce_ms) == (
        True, 5_000, 4, 100, 0.0)
    # allocations between two chances of a full collection: as many as with (20000, 10, 10) (ADR 0048)
    assert rtc.gc_gen0_threshold * rtc.gc_gen1_threshold * rtc.gc_gen2_threshold == 20_000 * 10 * 10
    result = _apply({"PATH": "/usr/bin:/bin"})
    after, frozen = result["after"], result["frozen"]
    assert after == [5_000, 4, 100] and isinstance(frozen, int) and frozen > 1000


def test_cpythons_collector_on_request() -> None:
    result = _apply({"PATH": "/usr/bin:/bin", "CALLSD_RTC_GC_FREEZE": "false", "CALLSD_RTC_GC_GEN0_THRESHOLD": "700",
                     "CALLSD_RTC_GC_GEN1_THRESHOLD": "10", "CALLSD_RTC_GC_GEN2_THRESHOLD": "10"})
    assert result["after"] == result["before"] and result["frozen"] == 0


def test_freeze_and_threshold_from_the_environment() -> None:
    result = _apply({"PATH": "/usr/bin:/bin", "CALLSD_RTC_GC_FREEZE": "true",
                     "CALLSD_RTC_GC_GEN0_THRESHOLD": "50000"})
    after, frozen = result["after"], result["frozen"]
    assert isinstance(after, list) and after[0] == 50000
    assert isinstance(frozen, int) and frozen > 1000  # the imported modules, config and all
    reported = result["reported"]
    assert isinstance(reported, list) and reported[0] == after
    assert isinstance(reported[1], int) and abs(reported[1] - frozen) < 100  # the probe's own objects came later


def test_out_of_range_values_are_refused_with_their_key() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"CALLSD_RTC_GC_GEN0_THRESHOLD": "5", "CALLSD_RTC_COALESCE_MS": "50",
                           "CALLSD_RTC_GC_FREEZE": "maybe"})
    text = "\n".join(exc.value.problems)
    assert "rtc.gc_gen0_threshold" in text and "rtc.coalesce_ms" in text and "rtc.gc_freeze" in text


def test_coalesce_ms_reaches_the_endpoint() -> None:
    plane = MediaPlane(PlaneConfig(ice_port_udp=0, coalesce_ms=2.0, fast_path="python"), lambda event: None)
    assert plane.endpoint.config.coalesce == pytest.approx(0.002)
    plane = MediaPlane(load_config(None, {"CALLSD_RTC_COALESCE_MS": "1.5", "CALLSD_RTC_ICE_PORT_UDP": "0"}).rtc,
                       lambda event: None)
    assert plane.endpoint.config.coalesce == pytest.approx(0.0015)
