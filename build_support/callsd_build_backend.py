"""The package's build backend: setuptools' own, with mypy (which carries mypyc) added to the build requirements
when ``CALLSD_MYPYC=1`` asks for core/ compiled (setup.py, docs/adr/0053-core-compiled-with-mypyc.md). A default,
pure build needs setuptools and wheel only, as before; an isolated compiled build (plain ``pip install .``) gets
mypy in its build environment without every other build paying for it."""

from __future__ import annotations

import os

from setuptools.build_meta import *  # noqa: F403 - every hook not defined here is setuptools' own

_COMPILER = ["mypy>=1.10"]  # mypyc ships inside mypy's wheel; the same floor as the test extra


def _compiling() -> list[str]:
    return _COMPILER if os.environ.get("CALLSD_MYPYC", "0") not in ("", "0") else []


# Not setuptools' hooks plus ours: theirs run setup.py to collect its ``setup_requires`` (it has none), and setup.py
# needs mypyc as soon as CALLSD_MYPYC=1, before the requirement that brings it is installed. [build-system] lists
# the rest (setuptools, wheel).
def get_requires_for_build_wheel(config_settings: dict[str, str | list[str]] | None = None) -> list[str]:
    return _compiling()


def get_requires_for_build_editable(config_settings: dict[str, str | list[str]] | None = None) -> list[str]:
    return _compiling()
