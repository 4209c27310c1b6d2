"""The native forwarding step (docs/adr/0009-native-fast-path.md) and the load tool's media engine (peer/_fastpeer.c)
are the package's C extensions; everything else is configured in pyproject.toml. Both link Debian's libsrtp2
(`libsrtp2-dev`) and OpenSSL's libcrypto (`libssl-dev`, the sender's AES-GCM: srtp_gcm_tx.h), scripts/system-deps.sh."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "callsd.adapters.media.native._engine",
            sources=["adapters/media/native/_engine.c"],
            depends=[f"adapters/media/native/{h}" for h in ("rtp_rules.h", "srtp_session.h", "srtp_gcm_tx.h", "send_gso.h", "pyslots.h", "addresses.h")]
            + ["adapters/media/native/twcc_stamp.h", "adapters/media/native/twcc_rules.h"],
            libraries=["srtp2", "crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        # The load tool's media engine (peer/engine.py, media="native"): the same SRTP session code, its own module.
        Extension(
            "callsd.peer._fastpeer",
            sources=["peer/_fastpeer.c"],
            include_dirs=["adapters/media/native"],
            depends=[f"adapters/media/native/{h}" for h in ("srtp_session.h", "srtp_gcm_tx.h", "pyslots.h")],
            libraries=["srtp2", "crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
    ]
)
