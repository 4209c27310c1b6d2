"""The native forwarding step (docs/adr/0009-native-fast-path.md) and the load tool's media engine (peer/_fastpeer.c)
are the package's C extensions; everything else is configured in pyproject.toml. Both link only OpenSSL's libcrypto
(`libssl-dev`, scripts/system-deps.sh): SRTP and SRTCP on EVP AES and HMAC (srtp_transform.h, docs/adr/0026)."""

from setuptools import Extension, setup

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
    ]
)
