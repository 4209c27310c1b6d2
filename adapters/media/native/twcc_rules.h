/* The rules of core/wire/transport_seq.py (stamping the transport-wide sequence number on an outgoing RTP packet) in
 * C, with no Python: twcc_stamp.h uses them in the step, fuzz_rtp_rules.c under the sanitizers.
 *
 * twcc_stamp_rules(packet, n, out, ext_id, seq) -> new length, or -1 where `stamp_transport_seq` returns None:
 *  - an element `ext_id` with two data bytes is overwritten in place;
 *  - else the element goes after the block's last element, into trailing padding when it has room (3 bytes in the
 *    one-byte form, 4 in the two-byte form), else the block grows by whole 32-bit words;
 *  - a packet without an extension block gets an 8-byte one-byte block.
 * `out` needs room for n + 8 bytes. tests/media/test_native_twcc.py holds it to the Python function byte for byte.
 */
#ifndef CALLSD_TWCC_RULES_H
#define CALLSD_TWCC_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* _find: the offset of the two data bytes of element `ext_id`, or -1. */
static long twcc_find(const uint8_t *p, size_t start, size_t end, int two_byte, int ext_id) {
    size_t i = start;
    while (i < end) {
        if (two_byte) {
            int eid = p[i];
            if (eid == 0) {
                i++;
                continue;
            }
            if (i + 2 > end)
                return -1;
            size_t length = p[i + 1];
            if (eid == ext_id && length == 2 && i + 4 <= end)
                return (long)(i + 2);
            i += 2 + length;
        } else {
            int b = p[i];
            if (b == 0) {
                i++;
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

/* _elements_end: the offset just after the block's last element, or -1 (malformed, or the one-byte stop id). */
static long twcc_elements_end(const uint8_t *p, size_t start, size_t end, int two_byte) {
    size_t i = start, last = start;
    while (i < end) {
        if (two_byte) {
            if (p[i] == 0) {
                i++;
                continue;
            }
            if (i + 2 > end)
                return -1;
            i += 2 + (size_t)p[i + 1];
        } else {
            int b = p[i];
            if (b == 0) {
                i++;
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

static long twcc_stamp_rules(const uint8_t *p, size_t n, uint8_t *out, int ext_id, unsigned seq) {
    if (n < 12 || p[0] >> 6 != 2 || ext_id < 1 || ext_id > 255)
        return -1;
    uint8_t hi = (uint8_t)(seq >> 8 & 0xFF), lo = (uint8_t)(seq & 0xFF);
    size_t off = 12 + 4 * (size_t)(p[0] & 0x0F);
    if (off > n)
        return -1;
    if (!(p[0] & 0x10)) {
        if (ext_id > 14)
            return -1;
        const uint8_t block[8] = {0xBE, 0xDE, 0, 1, (uint8_t)(ext_id << 4 | 1), hi, lo, 0};
        out[0] = p[0] | 0x10;
        memcpy(out + 1, p + 1, off - 1);
        memcpy(out + off, block, 8);
        memcpy(out + off + 8, p + off, n - off);
        return (long)(n + 8);
    }
    if (off + 4 > n)
        return -1;
    unsigned profile = (unsigned)p[off] << 8 | p[off + 1];
    size_t words = (size_t)p[off + 2] << 8 | p[off + 3];
    int two_byte = (profile & 0xFFF0) == 0x1000;
    if (profile != 0xBEDE && !two_byte)
        return -1;
    if (!two_byte && ext_id > 14)
        return -1;
    size_t start = off + 4, end = off + 4 + 4 * words;
    if (end > n)
        return -1;
    long at = twcc_find(p, start, end, two_byte, ext_id);
    if (at >= 0) {
        memcpy(out, p, n);
        out[at] = hi;
        out[at + 1] = lo;
        return (long)n;
    }
    long last_l = twcc_elements_end(p, start, end, two_byte);
    if (last_l < 0)
        return -1;
    size_t last = (size_t)last_l;
    uint8_t element[4];
    size_t elen;
    if (two_byte) {
        element[0] = (uint8_t)ext_id, element[1] = 2, element[2] = hi, element[3] = lo;
        elen = 4;
    } else {
        element[0] = (uint8_t)(ext_id << 4 | 1), element[1] = hi, element[2] = lo;
        elen = 3;
    }
    if (end - last >= elen) {
        memcpy(out, p, n);
        memcpy(out + last, element, elen);
        return (long)n;
    }
    size_t used = last - start + elen;
    size_t size = (used + 3) / 4 * 4;
    if (size / 4 > 0xFFFF)
        return -1;
    memcpy(out, p, off + 2);
    out[off + 2] = (uint8_t)(size / 4 >> 8);
    out[off + 3] = (uint8_t)(size / 4 & 0xFF);
    memcpy(out + start, p + start, last - start);
    memcpy(out + start + (last - start), element, elen);
    memset(out + start + used, 0, size - used);
    memcpy(out + start + size, p + end, n - end);
    return (long)(n - (end - start) + size);
}

#endif
