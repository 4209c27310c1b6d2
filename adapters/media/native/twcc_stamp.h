/* Transport-wide sequence numbers toward receivers, stamped by the native step itself (docs/adr/0024).
 *
 * Each packet to a receiver with a `TransportSequencer` (adapters/media/twcc_send.py, ADR 0021) gets the next
 * transport-wide sequence number, and the sequencer's send history records it. The step used to call
 * `TransportSequencer.stamp` for that, one Python call per egress packet; now, when the peer's `twcc` is a
 * TransportSequencer, whose state is a C record (sequencer_record.h), it stamps and records on that record itself,
 * with the send time from the sequencer's own `_clock`. Any other stamper is still called.
 *
 *   cs_stamp_transport_seq   core/wire/transport_seq.py  stamp_transport_seq (pure, no Python)
 *   sequencer_stamp_into     adapters/media/twcc_send.py SequencerTwin.stamp
 * tests/media/test_native_diff.py (transport-cc runs) and test_native_video_diff.py compare both paths' bytes and the
 * sequencers' state, test_sequencer_record.py the record against the twin; fuzz_video_rules.c runs
 * cs_stamp_transport_seq under the sanitizers.
 */
#ifndef CALLSD_TWCC_STAMP_H
#define CALLSD_TWCC_STAMP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* transport_seq._elements_end: the offset after the block's last element, or -1 (malformed, or a stop id). */
static inline long cs_elements_end(const uint8_t *d, size_t start, size_t end, int two_byte) {
    size_t i = start, last = start;
    while (i < end) {
        if (two_byte) {
            if (d[i] == 0) {
                i += 1;
                continue;
            }
            if (i + 2 > end)
                return -1;
            i += 2 + (size_t)d[i + 1];
        } else {
            uint8_t b = d[i];
            if (b == 0) {
                i += 1;
                continue;
            }
            if (b >> 4 == 15)
                return -1;
            i += 1 + (size_t)(b & 0x0F) + 1;
        }
        if (i > end)
            return -1;
        last = i;
    }
    return (long)last;
}

/* transport_seq._find: the offset of the 2 data bytes of element `ext_id` (length 2), or -1. */
static inline long cs_find_seq_element(const uint8_t *d, size_t start, size_t end, int two_byte, int ext_id) {
    size_t i = start;
    while (i < end) {
        if (two_byte) {
            int eid = d[i];
            if (eid == 0) {
                i += 1;
                continue;
            }
            if (i + 2 > end)
                return -1;
            size_t length = d[i + 1];
            if (eid == ext_id && length == 2 && i + 4 <= end)
                return (long)(i + 2);
            i += 2 + length;
        } else {
            uint8_t b = d[i];
            if (b == 0) {
                i += 1;
                continue;
            }
            if (b >> 4 == 15)
                return -1;
            size_t length = (size_t)(b & 0x0F) + 1;
            if (b >> 4 == ext_id && length == 2 && i + 3 <= end)
                return (long)(i + 1);
            i += 1 + length;
        }
    }
    return -1;
}

/* stamp_transport_seq: `d` (n bytes) with transport-wide sequence number `seq` under `ext_id`, written to `out`
 * (capacity `cap`, not overlapping `d`). Its length, or 0 where the Python function returns None (or it would not
 * fit `cap`). */
static inline size_t cs_stamp_transport_seq(uint8_t *out, size_t cap, const uint8_t *d, size_t n, int ext_id,
                                            int seq) {
    if (n < 12 || d[0] >> 6 != 2 || ext_id < 1 || ext_id > 255)
        return 0;
    uint8_t hi = (uint8_t)(seq >> 8 & 0xFF), lo = (uint8_t)(seq & 0xFF);
    size_t off = 12 + 4 * (size_t)(d[0] & 0x0F);
    if (off > n)
        return 0;
    if (!(d[0] & 0x10)) {
        if (ext_id > 14 || n + 8 > cap)
            return 0;
        uint8_t block[8] = {0xBE, 0xDE, 0, 1, (uint8_t)(ext_id << 4 | 1), hi, lo, 0};
        memcpy(out, d, off);
        out[0] = d[0] | 0x10;
        memcpy(out + off, block, 8);
        memcpy(out + off + 8, d + off, n - off);
        return n + 8;
    }
    if (off + 4 > n)
        return 0;
    unsigned profile = ((unsigned)d[off] << 8) | d[off + 1];
    size_t words = ((size_t)d[off + 2] << 8) | d[off + 3];
    int two_byte = (profile & 0xFFF0) == 0x1000;
    if (profile != 0xBEDE && !two_byte)
        return 0;
    if (!two_byte && ext_id > 14)
        return 0;
    size_t start = off + 4, end = off + 4 + 4 * words;
    if (end > n)
        return 0;
    long at = cs_find_seq_element(d, start, end, two_byte, ext_id);
    if (at >= 0) {
        if (n > cap)
            return 0;
        memcpy(out, d, n);
        out[at] = hi;
        out[at + 1] = lo;
        return n;
    }
    long last_at = cs_elements_end(d, start, end, two_byte);
    if (last_at < 0)
        return 0;
    size_t last = (size_t)last_at;
    uint8_t element[4];
    size_t elen;
    if (two_byte) {
        element[0] = (uint8_t)ext_id;
        element[1] = 2;
        element[2] = hi;
        element[3] = lo;
        elen = 4;
    } else {
        element[0] = (uint8_t)(ext_id << 4 | 1);
        element[1] = hi;
        element[2] = lo;
        elen = 3;
    }
    if (end - last >= elen) {
        if (n > cap)
            return 0;
        memcpy(out, d, n);
        memcpy(out + last, element, elen);
        return n;
    }
    size_t used = last - start + elen;
    size_t size = (used + 3) / 4 * 4;
    if (size / 4 > 0xFFFF)
        return 0;
    size_t total = off + 4 + size + (n - end);
    if (total > cap)
        return 0;
    memcpy(out, d, off);
    out[off] = (uint8_t)(profile >> 8);
    out[off + 1] = (uint8_t)profile;
    out[off + 2] = (uint8_t)(size / 4 >> 8);
    out[off + 3] = (uint8_t)(size / 4);
    memcpy(out + start, d + start, last - start);
    memcpy(out + last, element, elen);
    memset(out + last + elen, 0, size - used);
    memcpy(out + start + size, d + end, n - end);
    return total;
}

#endif
