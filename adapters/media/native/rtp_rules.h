/* The per-packet RTP rules of callsd's forwarder, in C, with no Python and no I/O.
 *
 * Every function here is the transliteration of one Python function that stays the reference:
 *   cs_find_extension      core/wire/rtp.py  find_extension
 *   cs_read_audio_level    core/wire/rtp.py  read_audio_level
 *   cs_rewrite_ext_block   adapters/media/forwarder.py  rewrite_extension_block (core/wire/rtp.py rewrite_rtp's
 *                          extension loop on a block behind a fake 12-byte header)
 *   cs_track_seq           adapters/media/forwarder.py  Forwarder.on_rtp's RFC 3550 A.1 update
 * tests/media/test_native_diff.py checks that both give the same bytes; fuzz_rtp_rules.c runs them under
 * ASan/UBSan on arbitrary input. Every read is bounds-checked against the length passed in; nothing allocates.
 */
#ifndef CALLSD_RTP_RULES_H
#define CALLSD_RTP_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CS_ONE_BYTE_PROFILE 0xBEDE
#define CS_TWO_BYTE_MASK 0x1000

/* Location of extension `ext_id`'s data in packet `d` of `n` bytes: returns the offset and sets *len, or -1. */
static inline long cs_find_extension(const uint8_t *d, size_t n, int ext_id, int *len) {
    if (n < 16 || !(d[0] & 0x10) || ext_id <= 0)
        return -1;
    size_t off = 12 + 4 * (size_t)(d[0] & 0x0F);
    if (off + 4 > n)
        return -1;
    unsigned profile = ((unsigned)d[off] << 8) | d[off + 1];
    size_t words = ((size_t)d[off + 2] << 8) | d[off + 3];
    size_t i = off + 4;
    size_t end = i + 4 * words;
    if (end > n)
        return -1;
    if (profile == CS_ONE_BYTE_PROFILE) {
        while (i < end) {
            uint8_t b = d[i];
            int eid = b >> 4;
            if (eid == 0) {
                i += 1;
                continue;
            }
            if (eid == 15)
                return -1;
            size_t length = (size_t)(b & 0x0F) + 1;
            if (i + 1 + length > end)
                return -1;
            if (eid == ext_id) {
                *len = (int)length;
                return (long)(i + 1);
            }
            i += 1 + length;
        }
    } else if ((profile & 0xFFF0) == CS_TWO_BYTE_MASK) {
        while (i < end) {
            int eid = d[i];
            if (eid == 0) {
                i += 1;
                continue;
            }
            if (i + 2 > end)
                return -1;
            size_t length = d[i + 1];
            if (i + 2 + length > end)
                return -1;
            if (eid == ext_id) {
                *len = (int)length;
                return (long)(i + 2);
            }
            i += 2 + length;
        }
    }
    return -1;
}

/* RFC 6464 audio level byte of extension `ext_id`, or -1 when absent or empty. */
static inline int cs_read_audio_level(const uint8_t *d, size_t n, int ext_id) {
    int len = 0;
    long at = cs_find_extension(d, n, ext_id, &len);
    if (at < 0 || len < 1)
        return -1;
    return d[at];
}

/* Rewrite a header-extension block in place (profile, length, elements: `blen` = 4 + 4 * words bytes) with the
 * 256-entry remap `table` (publisher id -> receiver id, 0 = blank to padding). Returns 1, or 0 when malformed. */
static inline int cs_rewrite_ext_block(uint8_t *blk, size_t blen, const uint8_t *table) {
    if (blen < 4)
        return 0;
    unsigned profile = ((unsigned)blk[0] << 8) | blk[1];
    size_t words = ((size_t)blk[2] << 8) | blk[3];
    size_t i = 4;
    size_t end = 4 + 4 * words;
    if (end > blen)
        return 0;
    if (profile == CS_ONE_BYTE_PROFILE) {
        while (i < end) {
            uint8_t b = blk[i];
            int eid = b >> 4;
            if (eid == 0) {
                i += 1;
                continue;
            }
            if (eid == 15)
                return 1;
            size_t length = (size_t)(b & 0x0F) + 1;
            if (i + 1 + length > end)
                return 0;
            uint8_t nid = table[eid];
            if (nid == 0 || nid > 14)
                memset(blk + i, 0, 1 + length);
            else if (nid != eid)
                blk[i] = (uint8_t)((nid << 4) | (b & 0x0F));
            i += 1 + length;
        }
        return 1;
    }
    if ((profile & 0xFFF0) == CS_TWO_BYTE_MASK) {
        while (i < end) {
            uint8_t eid = blk[i];
            if (eid == 0) {
                i += 1;
                continue;
            }
            if (i + 2 > end)
                return 0;
            size_t length = blk[i + 1];
            if (i + 2 + length > end)
                return 0;
            uint8_t nid = table[eid];
            if (nid == 0)
                memset(blk + i, 0, 2 + length);
            else
                blk[i] = nid;
            i += 2 + length;
        }
        return 1;
    }
    return 1;
}

/* Layout of one RTP packet as the forwarder splits it: header, CSRC list, extension block, payload.
 * Mirrors Forwarder.on_rtp: `csrc_end` and `start` may point past `n` for a truncated packet (Python slices then
 * yield less), so copies must clamp with cs_clamp. Returns 0 (ok), or 1 when the extension block is malformed. */
typedef struct {
    size_t off;       /* 12 + 4 * CC: end of the CSRC list as declared */
    size_t start;     /* first payload byte as declared */
    int has_ext;      /* X bit set */
} cs_layout;

static inline int cs_split(const uint8_t *d, size_t n, cs_layout *out) {
    out->off = 12 + 4 * (size_t)(d[0] & 0x0F);
    out->start = out->off;
    out->has_ext = (d[0] & 0x10) != 0;
    if (out->has_ext) {
        if (out->off + 4 > n)
            return 1;
        out->start = out->off + 4 + 4 * (((size_t)d[out->off + 2] << 8) | d[out->off + 3]);
        if (out->start > n)
            return 1;
    }
    return 0;
}

static inline size_t cs_clamp(size_t at, size_t n) { return at < n ? at : n; }

/* The extended-sequence update of RFC 3550 A.1 as the forwarder does it (no probation). */
static inline void cs_track_seq(int *started, long long *base_seq, long long *max_seq, long long *cycles, int seq) {
    if (!*started) {
        *started = 1;
        *base_seq = seq;
        *max_seq = seq;
        return;
    }
    long long d = ((long long)seq - *max_seq) & 0xFFFF;
    if (d > 0 && d < 0x8000) {
        if (seq < *max_seq)
            *cycles += 0x10000;
        *max_seq = seq;
    }
}

/* Build one receiver's copy of a packet into `out` (capacity `cap`): header with the receiver's PT, sequence,
 * timestamp and SSRC, the CSRC list, the rewritten extension block `blk` (or none), the payload. Returns the
 * length, or 0 when it does not fit. */
static inline size_t cs_build(uint8_t *out, size_t cap, const uint8_t *d, size_t n, const cs_layout *lay,
                              uint8_t b1, uint16_t seq, uint32_t ts, uint32_t ssrc, const uint8_t *blk,
                              size_t blen) {
    size_t csrc_from = cs_clamp(12, n), csrc_to = cs_clamp(lay->off, n);
    size_t pay_from = cs_clamp(lay->start, n);
    size_t csrc_len = csrc_to > csrc_from ? csrc_to - csrc_from : 0;
    size_t pay_len = n - pay_from;
    size_t total = 12 + csrc_len + blen + pay_len;
    if (total > cap)
        return 0;
    out[0] = d[0];
    out[1] = b1;
    out[2] = (uint8_t)(seq >> 8);
    out[3] = (uint8_t)seq;
    out[4] = (uint8_t)(ts >> 24);
    out[5] = (uint8_t)(ts >> 16);
    out[6] = (uint8_t)(ts >> 8);
    out[7] = (uint8_t)ts;
    out[8] = (uint8_t)(ssrc >> 24);
    out[9] = (uint8_t)(ssrc >> 16);
    out[10] = (uint8_t)(ssrc >> 8);
    out[11] = (uint8_t)ssrc;
    size_t at = 12;
    if (csrc_len) {
        memcpy(out + at, d + csrc_from, csrc_len);
        at += csrc_len;
    }
    if (blen) {
        memcpy(out + at, blk, blen);
        at += blen;
    }
    if (pay_len) {
        memcpy(out + at, d + pay_from, pay_len);
        at += pay_len;
    }
    return at;
}

#endif
