/* The per-packet video rules of simulcast and RTX, in C, with no Python and no I/O (docs/adr/0024).
 *
 * Each function is the transliteration of one pure Python function that stays the reference:
 *   cs_header_length      core/wire/rtx.py     header_length
 *   cs_unwrap_rtx         core/wire/rtx.py     unwrap_rtx
 *   cs_vp8_descriptor     core/video/payload.py parse_vp8_descriptor
 *   cs_keyframe_start     core/video/payload.py is_keyframe_start (VP8 and H.264)
 *   cs_rewrite_vp8_ids    core/video/payload.py rewrite_vp8_ids
 * tests/media/test_native_diff.py runs simulcast streams through both fast paths and compares the bytes;
 * fuzz_rtp_rules.c runs these under ASan/UBSan on arbitrary input. Every read is bounds-checked against the length
 * passed in; nothing allocates.
 */
#ifndef CALLSD_VIDEO_RULES_H
#define CALLSD_VIDEO_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Bytes of fixed header, CSRCs and header extension, or -1 when they do not fit (or the version is not 2). */
static inline long cs_header_length(const uint8_t *d, size_t n) {
    if (n < 12 || d[0] >> 6 != 2)
        return -1;
    size_t off = 12 + 4 * (size_t)(d[0] & 0x0F);
    if (d[0] & 0x10) {
        if (off + 4 > n)
            return -1;
        off += 4 + 4 * (((size_t)d[off + 2] << 8) | d[off + 3]);
    }
    return off <= n ? (long)off : -1;
}

/* The original packet an RTX packet `d` carries (RFC 4588), written to `out` (capacity >= n): media SSRC `ssrc`,
 * payload type `pt`, sequence number from the OSN, padding dropped. Returns its length, or 0 when the packet has
 * no OSN (a padding probe) or is malformed. */
static inline size_t cs_unwrap_rtx(uint8_t *out, const uint8_t *d, size_t n, uint32_t ssrc, int pt) {
    long start = cs_header_length(d, n);
    if (start < 0)
        return 0;
    size_t end = n;
    if (d[0] & 0x20) {
        size_t pad = d[n - 1];
        if (pad == 0 || end < pad || end - pad < (size_t)start)
            return 0;
        end -= pad;
    }
    if (end - (size_t)start < 2)
        return 0;
    out[0] = (uint8_t)(d[0] & ~0x20);
    out[1] = (uint8_t)((d[1] & 0x80) | (pt & 0x7F));
    out[2] = d[start];
    out[3] = d[start + 1];
    memcpy(out + 4, d + 4, 4);
    out[8] = (uint8_t)(ssrc >> 24);
    out[9] = (uint8_t)(ssrc >> 16);
    out[10] = (uint8_t)(ssrc >> 8);
    out[11] = (uint8_t)ssrc;
    size_t at = 12;
    memcpy(out + at, d + 12, (size_t)start - 12);
    at += (size_t)start - 12;
    memcpy(out + at, d + start + 2, end - (size_t)start - 2);
    return at + end - (size_t)start - 2;
}

/* A VP8 payload descriptor (RFC 7741): the fields a switch uses; offsets into the payload, -1 when absent. */
typedef struct {
    int start_of_partition, partition_id;
    long picture_id; /* -1: none */
    int picture_id_bits; /* 0, 7 or 15 */
    long picture_id_offset;
    long tl0picidx; /* -1: none */
    long tl0_offset;
    size_t header_length;
} cs_vp8;

/* Parse the descriptor at the start of `p` (`n` bytes): 1, or 0 when it is truncated. */
static inline int cs_vp8_descriptor(const uint8_t *p, size_t n, cs_vp8 *out) {
    if (n < 1)
        return 0;
    uint8_t b0 = p[0];
    size_t off = 1;
    out->picture_id = -1;
    out->picture_id_bits = 0;
    out->picture_id_offset = -1;
    out->tl0picidx = -1;
    out->tl0_offset = -1;
    if (b0 & 0x80) {
        if (off >= n)
            return 0;
        uint8_t x = p[off++];
        if (x & 0x80) {
            if (off >= n)
                return 0;
            out->picture_id_offset = (long)off;
            if (p[off] & 0x80) {
                if (off + 1 >= n)
                    return 0;
                out->picture_id = (long)((p[off] & 0x7F) << 8 | p[off + 1]);
                out->picture_id_bits = 15;
                off += 2;
            } else {
                out->picture_id = p[off] & 0x7F;
                out->picture_id_bits = 7;
                off += 1;
            }
        }
        if (x & 0x40) {
            if (off >= n)
                return 0;
            out->tl0picidx = p[off];
            out->tl0_offset = (long)off;
            off += 1;
        }
        if (x & 0x30) {
            if (off >= n)
                return 0;
            off += 1;
        }
    }
    out->start_of_partition = (b0 & 0x10) != 0;
    out->partition_id = b0 & 0x07;
    out->header_length = off;
    return 1;
}

enum { CS_CODEC_OTHER = 0, CS_CODEC_VP8 = 1, CS_CODEC_H264 = 2 };

static inline int cs_h264_key_type(int t) { return t == 5 || t == 7; }

/* Whether payload `p` of `codec` (CS_CODEC_*) starts a key frame. */
static inline int cs_keyframe_start(int codec, const uint8_t *p, size_t n) {
    if (codec == CS_CODEC_VP8) {
        cs_vp8 d;
        if (!cs_vp8_descriptor(p, n, &d) || !d.start_of_partition || d.partition_id != 0 || d.header_length >= n)
            return 0;
        return (p[d.header_length] & 0x01) == 0;
    }
    if (codec != CS_CODEC_H264 || n < 1)
        return 0;
    int nal = p[0] & 0x1F;
    if (nal == 24) { /* STAP-A */
        size_t off = 1;
        while (off + 2 < n) {
            size_t size = (size_t)p[off] << 8 | p[off + 1];
            if (size == 0 || off + 2 + size > n)
                return 0;
            if (cs_h264_key_type(p[off + 2] & 0x1F))
                return 1;
            off += 2 + size;
        }
        return 0;
    }
    if (nal == 28) /* FU-A: the start fragment names the type */
        return n >= 2 && (p[1] & 0x80) && cs_h264_key_type(p[1] & 0x1F);
    return cs_h264_key_type(nal);
}

/* Write `picture_id` (when >= 0, modulo the descriptor's width) and `tl0picidx` (when >= 0, modulo 256) into the
 * descriptor of `p` in place: 1, or 0 when the descriptor is truncated. */
static inline int cs_rewrite_vp8_ids(uint8_t *p, size_t n, long long picture_id, long long tl0picidx) {
    cs_vp8 d;
    if (!cs_vp8_descriptor(p, n, &d))
        return 0;
    if (picture_id >= 0 && d.picture_id_bits == 15) {
        p[d.picture_id_offset] = (uint8_t)(0x80 | ((picture_id >> 8) & 0x7F));
        p[d.picture_id_offset + 1] = (uint8_t)(picture_id & 0xFF);
    } else if (picture_id >= 0 && d.picture_id_bits == 7) {
        p[d.picture_id_offset] = (uint8_t)(picture_id & 0x7F);
    }
    if (tl0picidx >= 0 && d.tl0_offset >= 0)
        p[d.tl0_offset] = (uint8_t)(tl0picidx & 0xFF);
    return 1;
}

#endif
