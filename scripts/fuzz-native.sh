#!/usr/bin/env bash
# Fuzz the native fast path under ASan + UBSan, in two parts:
#  1. libFuzzer on the C RTP rules (adapters/media/native/rtp_rules.h) and on the SRTP receive side (fuzz_srtp.c) for
#     SECONDS each, then on the video rules (video_rules.h: RTX, VP8/H.264 key frames, VP8 ids) for SECONDS/2; the
#     corpora are seeded with valid packets (one-byte and two-byte extensions, CSRCs, padding; protected SRTP and
#     SRTCP) so the fuzzer starts inside the interesting paths;
#  2. the whole extension (_engine.c: recvmmsg, SRTP on libcrypto, the forwarder's rules on Python objects, sendmmsg) built
#     with the sanitizers and driven by EXAMPLES random scenarios of the differential test (native == python).
#   scripts/fuzz-native.sh SECONDS [EXAMPLES] [WORKDIR]
# Exit 0 only if both ended without a crash, a sanitizer report or a difference.
set -euo pipefail
seconds=${1:-60}
examples=${2:-50}
work=${3:-$(mktemp -d)}
python=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
here=$(cd "$(dirname "$0")/.." && pwd)
cc=$(command -v clang-14 || command -v clang || true)
[ -n "$cc" ] || { echo "fuzz-native: clang not found (scripts/system-deps.sh installs clang-14)" >&2; exit 1; }
mkdir -p "$work/corpus"
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$here/adapters/media/native" "$here/adapters/media/native/fuzz_rtp_rules.c" -o "$work/fuzz_rtp_rules"
"$python" - "$work/corpus" <<'PY'
import os, struct, sys
table = bytes([0, 4, 0, 14, 15, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
one = struct.pack("!HH", 0xBEDE, 2) + bytes([0x10, 0x85, 0x31, ord("a"), ord("b"), 0, 0, 0])
two = struct.pack("!HH", 0x1000, 1) + bytes([1, 1, 0x7F, 0])
seeds = {
    "plain": bytes([0x80, 111, 0, 1, 0, 0, 3, 192, 0, 0, 0, 9]) + b"payload",
    "one_byte": bytes([0x90, 111, 0, 2, 0, 0, 7, 128, 0, 0, 0, 9]) + one + b"opus",
    "two_byte_csrc": bytes([0x92, 96, 0, 3, 0, 1, 0, 0, 0, 0, 0, 9]) + bytes(8) + two + b"vp8",
    "padding": bytes([0xB0, 111, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9]) + one + bytes(3) + bytes([4]),
}
for name, packet in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(table + packet)
PY
# One libFuzzer run of target $1 on corpus $2 for $3 seconds (default $seconds); fails on a crash or a sanitizer
# report.
fuzz_run() {
    local log="$work/fuzz-$1.log"
    if ! "$work/$1" -max_total_time="${3:-$seconds}" -max_len=4200 -print_final_stats=1 "$2" >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz-native: $1 found a crash or a sanitizer report (log: $log)" >&2
        exit 1
    fi
    if grep -E "runtime error|ERROR: AddressSanitizer|ERROR: libFuzzer" "$log" >/dev/null; then
        grep -E -A5 "runtime error|ERROR:" "$log" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$log" | tail -3
}
fuzz_run fuzz_rtp_rules "$work/corpus"

# 1b. libFuzzer on the SRTP receive side on libcrypto (srtp_transform.h), seeded with packets protected by the
#     extension itself under the target's fixed key, both profiles, all four transforms (fuzz_srtp.c: layout)
mkdir -p "$work/corpus-srtp"
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$here/adapters/media/native" "$here/adapters/media/native/fuzz_srtp.c" -lcrypto -o "$work/fuzz_srtp"
"$python" - "$work/corpus-srtp" <<'PY'
import os, struct, sys
from callsd.adapters.media.native.path import SrtpSession
key = bytes(range(1, 31))
for gcm, profile in ((1, 7), (0, 1)):
    tx = SrtpSession(profile, key[:28] if gcm else key, True)
    rtp = [tx.protect(struct.pack("!BBHII", 0x90 if s % 2 else 0x80, 111, s, s * 960, 0x1234)
                      + (struct.pack("!HH", 0xBEDE, 1) + bytes([0x10, 0x85, 0, 0]) if s % 2 else b"")
                      + bytes(40)) for s in (65534, 65535, 0, 1, 1, 3)]
    rtcp = [tx.protect_rtcp(bytes([0x81, 201, 0, 7]) + struct.pack("!I", 0x1234) + bytes(24)) for _ in range(3)]
    for op, packets in ((0, rtp), (1, rtcp), (2, [bytes(p[:-10]) for p in rtp]), (3, [bytes(20)])):
        body = b"\xff\x00".join(p for p in packets if p is not None)
        with open(os.path.join(sys.argv[1], f"seed-{gcm}-{op}"), "wb") as f:
            f.write(bytes([gcm | op << 1]) + body)
PY
fuzz_run fuzz_srtp "$work/corpus-srtp"
echo "fuzz-native: ${seconds}s per target, no crash, no sanitizer report"

# 1c. the video rules (video_rules.h: RTX unwrap, VP8 descriptors, key frames, VP8 id rewrite; twcc_stamp.h: the
#     transport-wide sequence number), half the time
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$here/adapters/media/native" "$here/adapters/media/native/fuzz_video_rules.c" -o "$work/fuzz_video_rules"
mkdir -p "$work/video_corpus"
"$python" - "$work/video_corpus" <<'PY'
import os, struct, sys
rid = struct.pack("!HH", 0xBEDE, 1) + bytes([0xA0, ord("h"), 0, 0])
seeds = {
    "vp8_key": bytes([0x90, 96, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7]) + rid + bytes([0x90, 0xE0, 0x81, 2, 3, 0x20, 0]),
    "vp8_pid7": bytes([0x80, 96, 0, 2, 0, 0, 0, 9, 0, 0, 0, 7]) + bytes([0x90, 0x80, 5, 1]),
    "h264_stap": bytes([0x80, 102, 0, 3, 0, 0, 0, 9, 0, 0, 0, 7]) + bytes([0x78, 0, 2, 0x67, 0, 0, 1, 0x65]),
    "h264_fu": bytes([0x80, 102, 0, 4, 0, 0, 0, 9, 0, 0, 0, 7]) + bytes([0x7C, 0x85, 1]),
    "rtx": bytes([0x90, 97, 0, 5, 0, 0, 0, 9, 0, 0, 0, 8]) + rid + bytes([0, 1, 0x90, 0x80, 5, 1]),
    "rtx_probe": bytes([0xA0, 97, 0, 6, 0, 0, 0, 9, 0, 0, 0, 8]) + bytes(3) + bytes([4]),
}
for name, packet in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(bytes([7, 96, 9, 3]) + packet)
PY
vseconds=$(( seconds / 2 > 5 ? seconds / 2 : 5 ))
fuzz_run fuzz_video_rules "$work/video_corpus" "$vseconds"
echo "fuzz-native: video rules ${vseconds}s, no crash, no sanitizer report"

# 2. the extension under the sanitizers (gcc's, preloaded: the interpreter itself is not instrumented)
"${CC:-gcc}" -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
    -shared -fPIC $("$python" -c "import sysconfig; print('-I' + sysconfig.get_paths()['include'])") \
    "$here/adapters/media/native/_engine.c" -lcrypto -o "$work/_engine_asan.so"
cd "$here"
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 \
    "$python" tests/media/native_asan_run.py "$work/_engine_asan.so" "$examples" 2>"$work/asan.log" \
    || { tail -60 "$work/asan.log" >&2; echo "fuzz-native: the sanitized engine failed" >&2; exit 1; }
if grep -E "runtime error|ERROR: AddressSanitizer" "$work/asan.log" >/dev/null; then
    grep -E -A8 "runtime error|ERROR: AddressSanitizer" "$work/asan.log" >&2
    exit 1
fi
