"""Run the differential test's scenarios against an ASan/UBSan build of the native engine (scripts/fuzz-native.sh).

    LD_PRELOAD="libasan.so libubsan.so" python tests/media/native_asan_run.py ENGINE.so EXAMPLES

Loads the sanitized extension under the real module name before the package imports it, then checks that native
and Python outputs are identical for EXAMPLES random scenarios and EXAMPLES/2 video ones (simulcast, RTX,
transport-cc): any memory error aborts the process with a report.
"""

from __future__ import annotations

import importlib.util
import os
import sys

spec = importlib.util.spec_from_file_location("callsd.adapters.media.native._engine", sys.argv[1])
assert spec is not None and spec.loader is not None
engine = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = engine
spec.loader.exec_module(engine)
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

import callsd.adapters.media.native.path as native  # noqa: E402
import native_support as diff  # noqa: E402
import native_video_support as video  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

assert native.Engine is engine.Engine, "the sanitized engine was not the one imported"


@settings(max_examples=int(sys.argv[2]), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(diff.scenarios())
def check(sc: diff.Scenario) -> None:
    assert diff.run(sc, "native") == diff.run(sc, "python")
    # with transport-cc receivers and publishers: the C stamp and the C arrival log too
    assert diff.run(sc, "native", True) == diff.run(sc, "python", True)


@settings(max_examples=max(int(sys.argv[2]) // 2, 5), deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(video.video_scenarios())
def check_video(vs: video.VideoScenario) -> None:
    assert video.run_video(vs, "native", twcc=True) == video.run_video(vs, "python", twcc=True)


check()
check_video()
print(f"native-asan: {sys.argv[2]} scenarios (and half as many video ones), native == python, no sanitizer report")
