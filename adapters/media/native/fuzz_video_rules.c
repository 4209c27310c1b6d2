/* libFuzzer target for the C side of the video rules (video_rules.h: RTX unwrapping, VP8 descriptors, key-frame
 * detection for VP8 and H.264, VP8 id rewriting; twcc_stamp.h: the transport-wide sequence number): whatever the
 * bytes, no read or write outside the packet, no
 * undefined behaviour, and the results stay inside the packet. Built with clang -fsanitize=fuzzer,address,undefined
 * by scripts/fuzz-native.sh (`make fuzz`, and a bounded run in tests/media/test_native_fuzz.py).
 *
 * Input layout: 4 bytes of parameters (SSRC low byte, payload type, picture id, TL0PICIDX), then one packet as the
 * step sees it after SRTP. Every rule runs on exactly-sized heap copies so that ASan sees any overrun.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rtp_rules.h"
#include "video_rules.h"
#include "twcc_stamp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4)
        return 0;
    size_t n = size - 4;
    uint8_t *pkt = malloc(n ? n : 1);
    uint8_t *out = malloc(n ? n : 1);
    if (pkt == NULL || out == NULL) {
        free(pkt);
        free(out);
        return 0;
    }
    memcpy(pkt, data + 4, n);
    long start = cs_header_length(pkt, n);
    if (start > (long)n)
        abort();
    size_t got = cs_unwrap_rtx(out, pkt, n, 0x1000u | data[0], data[1] & 0x7F);
    if (got > n || (got && got < 12))
        abort(); /* the original is never longer than its RTX packet */
    if (got && cs_header_length(out, got) < 0)
        abort(); /* and always parses */
    if (start >= 0) {
        const uint8_t *payload = pkt + start;
        size_t plen = n - (size_t)start;
        (void)cs_keyframe_start(CS_CODEC_VP8, payload, plen);
        (void)cs_keyframe_start(CS_CODEC_H264, payload, plen);
        cs_vp8 d;
        if (cs_vp8_descriptor(payload, plen, &d) &&
            (d.header_length > plen || d.picture_id_offset >= (long)plen || d.tl0_offset >= (long)plen))
            abort();
        uint8_t *body = malloc(plen ? plen : 1);
        if (body != NULL) {
            memcpy(body, payload, plen);
            (void)cs_rewrite_vp8_ids(body, plen, data[2] & 1 ? -1 : (long long)data[2] << 7, data[3]);
            free(body);
        }
    }
    /* the transport-wide stamp into an exactly-sized buffer: grows the packet by at most 8 bytes */
    uint8_t *stamped = malloc(n + 8);
    if (stamped != NULL) {
        size_t s = cs_stamp_transport_seq(stamped, n + 8, pkt, n, 1 + data[0] % 255, data[2] << 8 | data[3]);
        if (s > n + 8 || (s && s < n))
            abort();
        free(stamped);
    }
    /* the payload rules on arbitrary bytes, as if they were a payload */
    (void)cs_keyframe_start(CS_CODEC_VP8, pkt, n);
    (void)cs_keyframe_start(CS_CODEC_H264, pkt, n);
    (void)cs_rewrite_vp8_ids(pkt, n, 0x7FFF, 255);
    free(pkt);
    free(out);
    return 0;
}
