/* libFuzzer target for the C side of the RTP rules (rtp_rules.h): whatever the bytes, no read or write outside
 * the packet, no undefined behaviour. Built with clang -fsanitize=fuzzer,address,undefined by
 * scripts/fuzz-native.sh (`make fuzz`, and a bounded run in tests/media/test_native_fuzz.py).
 *
 * Input layout: 16 bytes of remap table (publisher ids 0..15 -> receiver ids), then one packet as the forwarder
 * sees it after SRTP. Every rule runs on it the way _engine.c runs it, on exactly-sized heap copies so that ASan
 * sees any overrun.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rtp_rules.h"
#include "twcc_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 16 + 12)
        return 0;
    uint8_t table[256] = {0};
    memcpy(table, data, 16);
    size_t n = size - 16;
    uint8_t *pkt = malloc(n);
    if (pkt == NULL)
        return 0;
    memcpy(pkt, data + 16, n);

    int len = 0;
    long at = cs_find_extension(pkt, n, data[0] & 0x0F, &len);
    if (at >= 0 && ((size_t)at + (size_t)len > n || len < 0))
        abort(); /* a location outside the packet */
    (void)cs_read_audio_level(pkt, n, 1 + (data[1] & 0x0F));

    cs_layout lay;
    if (!cs_split(pkt, n, &lay)) {
        size_t blen = lay.has_ext ? lay.start - lay.off : 0;
        uint8_t *blk = NULL;
        if (lay.has_ext) {
            if (lay.start > n || lay.off > lay.start)
                abort();
            blk = malloc(blen ? blen : 1);
            if (blk == NULL) {
                free(pkt);
                return 0;
            }
            memcpy(blk, pkt + lay.off, blen);
            if (!cs_rewrite_ext_block(blk, blen, table)) {
                free(blk);
                blk = NULL;
                blen = 0;
            }
        }
        size_t cap = 12 + n + blen;
        uint8_t *out = malloc(cap);
        if (out != NULL) {
            size_t got = cs_build(out, cap, pkt, n, &lay, (uint8_t)(pkt[1] | 0x80), 0xFFFF, 0xFFFFFFFFu, 1, blk, blen);
            if (got > cap)
                abort();
            free(out);
        }
        free(blk);
    }
    /* the block rewrite on arbitrary bytes, as if they were a block */
    uint8_t *raw = malloc(n);
    if (raw != NULL) {
        memcpy(raw, pkt, n);
        (void)cs_rewrite_ext_block(raw, n, table);
        free(raw);
    }
    /* the transport-wide stamp (twcc_rules.h) into an output of exactly the room it is promised */
    uint8_t *stamped = malloc(n + 8);
    if (stamped != NULL) {
        long got = twcc_stamp_rules(pkt, n, stamped, data[3], ((unsigned)data[4] << 8) | data[5]);
        if (got > (long)(n + 8))
            abort();
        free(stamped);
    }
    int started = data[2] & 1;
    long long base = pkt[0], max = ((long long)pkt[2] << 8) | pkt[3], cycles = (long long)pkt[4] << 16;
    cs_track_seq(&started, &base, &max, &cycles, ((int)pkt[5] << 8) | pkt[6]);
    free(pkt);
    return 0;
}
