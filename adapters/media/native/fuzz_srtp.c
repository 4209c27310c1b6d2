/* libFuzzer target for the native SRTP receive side (srtp_transform.h, srtp_replay.h): whatever the bytes, no read
 * or write outside the packet, no undefined behaviour, and a packet that unprotects is never longer than it came.
 * Built with clang -fsanitize=fuzzer,address,undefined by scripts/fuzz-native.sh (`make fuzz`, and a bounded run
 * in tests/media/test_native_fuzz.py).
 *
 * Input layout: one selector byte (bit 0: profile GCM or AES-CM; bits 1-2: SRTP unprotect, SRTCP unprotect, SRTP
 * protect, SRTCP protect), then packets separated by the byte pair 0xFF 0x00, all through one session so the replay
 * windows and stream tables carry state from one packet to the next. Every packet gets an exactly-sized heap copy
 * (plus the trailer room protect needs) so that ASan sees any overrun. A fixed key: forged packets reach the
 * authentication step and fail there; the seeds are real protected packets, so the paths after it run too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "srtp_transform.h"

#define ROOM (SRTP_GCM_TAG + 4)

static const uint8_t material[30] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30};

static void run(srtp_ctx *c, int op, const uint8_t *data, size_t n) {
    if (n > 4096)
        return;
    uint8_t *pkt = malloc(n + ROOM);
    if (pkt == NULL)
        return;
    memcpy(pkt, data, n);
    int len = (int)n, rc;
    switch (op) {
    case 0: rc = srtp_ctx_unprotect(c, pkt, &len); break;
    case 1: rc = srtp_ctx_unprotect_rtcp(c, pkt, &len); break;
    case 2: rc = srtp_ctx_protect(c, pkt, &len); break;
    default: rc = srtp_ctx_protect_rtcp(c, pkt, &len); break;
    }
    if (rc == SRTP_OK && (op < 2 ? len > (int)n || len < 0 : len > (int)n + ROOM))
        abort();
    free(pkt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || srtp_keys_global_init() < 0)
        return 0;
    int gcm = data[0] & 1, op = (data[0] >> 1) & 3;
    srtp_ctx c;
    if (srtp_ctx_init(&c, gcm ? SRTP_PROFILE_AEAD_AES_128_GCM : SRTP_PROFILE_AES128_CM_SHA1_80, material,
                      sizeof material, 1) != SRTP_OK)
        abort();
    size_t start = 1;
    for (size_t i = 1; i + 1 <= size; i++) {
        if (i + 1 < size && data[i] == 0xFF && data[i + 1] == 0x00) {
            run(&c, op, data + start, i - start);
            start = i + 2;
            i++;
        }
    }
    if (start <= size)
        run(&c, op, data + start, size - start);
    srtp_ctx_free(&c);
    return 0;
}
