"""Hypothesis profiles for the property tests, chosen by the HYPOTHESIS_PROFILE environment variable.

- ``dev`` (the default): 30 examples per test, 30 steps per state-machine run, for a quick loop while coding.
- ``ci`` (the Makefile's test target sets it): 300 examples per test; state machines run up to 50 steps
  (``stateful_step_count=50``), so the call-core machine explores 300 runs of up to 50 inputs each. No deadline: the
  runners are shared and timing is not what these tests assert.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=300, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
