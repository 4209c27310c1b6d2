"""The native forwarding step (docs/adr/0009-native-fast-path.md) and the load tool's media engine (peer/_fastpeer.c)
are the package's C extensions; everything else is configured in pyproject.toml. Both link only OpenSSL's libcrypto
(`libssl-dev`, scripts/system-deps.sh): SRTP and SRTCP on EVP AES and HMAC (srtp_transform.h, docs/adr/0026).

The pure core (core/, `callsd.core`) can also be compiled by mypyc into C extension modules built from the same
source (docs/adr/0053-core-compiled-with-mypyc.md): ``CALLSD_MYPYC=1`` at build time. The source stays the reference
and the default build leaves core/ pure Python (the ADR has the figures that decided it)."""

import os
from glob import glob

from setuptools import Extension, setup

# Modules that stay Python in a compiled build, and why (docs/adr/0053):
# - the calls machine's inputs and outputs: the event log's codec reads their fields' type hints
#   (``typing.get_type_hints``) to check and convert a logged value, and mypyc replaces a compiled class's
#   annotations by their runtime classes (``str | None`` becomes ``type``, ``tuple[str, ...]`` ``tuple``); and an
#   input built from a value of the wrong type must raise ``LocalProtocolError`` from ``__post_init__``, where a
#   compiled class's attribute setter raises ``TypeError`` first.
_PURE = ("typecheck/callsd/core/calls/events.py", "typecheck/callsd/core/calls/outputs.py")


def _compiled_core() -> list[Extension]:
    """core/'s modules as mypyc extension modules, when ``CALLSD_MYPYC`` asks for them (``1``: every module; ``0``
    or unset: none). mypyc reads the tree through typecheck/callsd (the symlinks that give mypy the import names,
    pyproject.toml's [tool.mypy]), so each module is built under its name (``callsd.core.wire.sdp``) and lands next
    to its source; one shared library (``callsd.core.compiled__mypyc``, inside the package so that the editable
    install and the wheel both find it) holds them all, so calls between them are C calls. The packages'
    ``__init__.py`` stay Python: they only re-export, and a compiled package ``__init__`` runs before its
    ``__path__`` is set under setuptools' editable finder."""
    if os.environ.get("CALLSD_MYPYC", "0") in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # not a build requirement while core/ ships as Python (ADR 0053)
        raise SystemExit("CALLSD_MYPYC=1 needs mypy (mypyc) in the build environment: build with "
                         "`pip install --no-build-isolation` from an environment that has it (the test extra does), "
                         "as `make test-compiled` does") from None

    paths = sorted(p for p in glob("typecheck/callsd/core/**/*.py", recursive=True)
                   if os.path.basename(p) != "__init__.py" and p not in _PURE)
    return mypycify(paths, opt_level="3", group_name="callsd.core.compiled")


setup(
    ext_modules=[
        Extension(
            "callsd.adapters.media.native._engine",
            sources=["adapters/media/native/_engine.c"],
            depends=[f"adapters/media/native/{h}" for h in (
                "rtp_rules.h", "srtp_session.h", "srtp_transform.h", "srtp_keys.h", "srtp_replay.h", "send_gso.h",
                "pyslots.h", "addresses.h", "video_rules.h", "simulcast_step.h", "arrival_log.h", "twcc_stamp.h",
                "twcc_step.h", "engine_state.h", "forward_step.h", "arrival_step.h", "prefetch.h",
                "route_record.h", "sequencer_record.h", "track_record.h")]
            + [f"adapters/media/native/{h}" for h in ("video_attrs.h", "layer_switch.h", "rtcp_batch.h")]
            + [f"adapters/media/native/{h}" for h in ("send_epoch.h", "send_state.h")],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        # The load tool's media engine (peer/engine.py, media="native"): the same SRTP session code, its own module.
        Extension(
            "callsd.peer._fastpeer",
            sources=["peer/_fastpeer.c"],
            include_dirs=["adapters/media/native"],
            depends=[f"adapters/media/native/{h}" for h in ("srtp_session.h", "srtp_transform.h", "srtp_keys.h",
                                                              "srtp_replay.h", "pyslots.h", "send_epoch.h")]
            + ["peer/fastpeer_stats.h", "peer/fastpeer_send.h"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        *_compiled_core(),
    ]
)
