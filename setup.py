"""The native forwarding step (docs/adr/0009-native-fast-path.md) is the package's one C extension; everything else
is configured in pyproject.toml. It links Debian's libsrtp2 (`libsrtp2-dev`, scripts/system-deps.sh)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "callsd.adapters.media.native._engine",
            sources=["adapters/media/native/_engine.c"],
            depends=["adapters/media/native/rtp_rules.h"],
            libraries=["srtp2"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ]
)
