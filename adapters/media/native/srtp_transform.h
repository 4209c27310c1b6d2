/* One SRTP session on libcrypto: protect and unprotect of SRTP and SRTCP for AEAD_AES_128_GCM and
 * AES_CM_128_HMAC_SHA1_80, with libsrtp2 2.7's policy as adapters/media/srtp.py sets it through pylibsrtp (any SSRC,
 * a 1024-packet replay window, repeats allowed on send) and its exact outcomes: the same bytes out, the same packets
 * refused with the same status (tests/media/test_native_srtp_diff.py compares every call with pylibsrtp's).
 *
 * Packet layouts (RFC 3711 §3.1 and §3.4, RFC 7714 §8.1 and §9.1):
 *   SRTP, GCM:    header | payload encrypted | tag(16)            IV = salt XOR (0^16 | SSRC | ROC | SEQ), AAD = header
 *   SRTP, AES-CM: header | payload encrypted | HMAC-SHA1-80        over header | payload | ROC
 *   SRTCP, GCM:   first 8 bytes | rest encrypted | tag(16) | E | index(31)   AAD = first 8 bytes | E | index
 *   SRTCP, AES-CM: first 8 bytes | rest encrypted | E | index(31) | HMAC-SHA1-80 over everything before it
 * where "header" runs through the CSRCs and the header extension. Per SSRC state (srtp_replay.h) exists only once a
 * packet of that SSRC was protected or authenticated, as libsrtp clones a stream from its template only then. */
#ifndef CALLSD_SRTP_TRANSFORM_H
#define CALLSD_SRTP_TRANSFORM_H

#include <openssl/crypto.h>
#include <stdlib.h>

#include "srtp_keys.h"
#include "srtp_replay.h"

typedef struct {
    int gcm; /* 1: AEAD_AES_128_GCM, 0: AES_CM_128_HMAC_SHA1_80 */
    srtp_keys rtp, rtcp;
    srtp_stream *streams;
    srtp_window *windows; /* parallel to `streams`, allocated on the first unprotect (a sender never needs it) */
    int count, capacity, last;
} srtp_ctx;

/* Key the session from the DTLS-SRTP master key and salt (`derive`), or from session keys given directly (the
 * known-answer tests of RFC 7714 and RFC 3711 B.2 give those): key(16) | salt(12 or 14) [| auth key(20)], the same
 * for SRTP and SRTCP. SRTP_OK, SRTP_BAD_PARAM (profile or length) or SRTP_INIT_FAIL. */
static int srtp_ctx_init(srtp_ctx *c, int profile, const uint8_t *material, size_t len, int derive) {
    memset(c, 0, sizeof *c);
    if (profile != SRTP_PROFILE_AEAD_AES_128_GCM && profile != SRTP_PROFILE_AES128_CM_SHA1_80)
        return SRTP_BAD_PARAM;
    c->gcm = profile == SRTP_PROFILE_AEAD_AES_128_GCM;
    size_t salt = c->gcm ? SRTP_GCM_SALT : SRTP_CM_SALT;
    size_t need = SRTP_MASTER_KEY + salt + (!derive && !c->gcm ? SRTP_AUTH_KEY : 0);
    if (len < need)
        return SRTP_BAD_PARAM;
    int bad;
    if (derive)
        bad = srtp_keys_derive(&c->rtp, c->gcm, material, material + SRTP_MASTER_KEY, 0) < 0 ||
              srtp_keys_derive(&c->rtcp, c->gcm, material, material + SRTP_MASTER_KEY, 3) < 0;
    else
        bad = srtp_keys_set(&c->rtp, c->gcm, material, material + 16, material + 16 + salt) < 0 ||
              srtp_keys_set(&c->rtcp, c->gcm, material, material + 16, material + 16 + salt) < 0;
    return bad ? SRTP_INIT_FAIL : SRTP_OK;
}

static void srtp_ctx_free(srtp_ctx *c) {
    srtp_keys_free(&c->rtp);
    srtp_keys_free(&c->rtcp);
    free(c->streams);
    free(c->windows);
    memset(c, 0, sizeof *c);
}

static uint32_t srtp_read32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The SSRC's stream (its position), or -1. */
static int srtp_find(srtp_ctx *c, uint32_t ssrc) {
    if (c->last < c->count && c->streams[c->last].ssrc == ssrc)
        return c->last;
    for (int i = 0; i < c->count; i++) {
        if (c->streams[i].ssrc == ssrc)
            return c->last = i;
    }
    return -1;
}

/* The SSRC's stream, created fresh if it has none: its position, or -1 when out of memory. */
static int srtp_find_or_add(srtp_ctx *c, uint32_t ssrc) {
    int i = srtp_find(c, ssrc);
    if (i >= 0)
        return i;
    if (c->count == c->capacity) {
        int capacity = c->capacity ? 2 * c->capacity : 4;
        srtp_stream *grown = realloc(c->streams, (size_t)capacity * sizeof *grown);
        if (grown == NULL)
            return -1;
        c->streams = grown;
        if (c->windows != NULL) {
            srtp_window *w = realloc(c->windows, (size_t)capacity * sizeof *w);
            if (w == NULL)
                return -1;
            c->windows = w;
        }
        c->capacity = capacity;
    }
    memset(&c->streams[c->count], 0, sizeof c->streams[0]);
    c->streams[c->count].ssrc = ssrc;
    if (c->windows != NULL)
        memset(&c->windows[c->count], 0, sizeof c->windows[0]);
    return c->last = c->count++;
}

/* The RTP header's length through its extension (libsrtp's srtp_validate_rtp_header), or -1 when `n` bytes cannot
 * hold it. */
static int srtp_header_length(const uint8_t *pkt, int n) {
    if (n < 12)
        return -1;
    int header = 12 + 4 * (pkt[0] & 0x0F);
    if (n < header)
        return -1;
    if (pkt[0] & 0x10) {
        if (n < header + 4)
            return -1;
        header += 4 + 4 * ((pkt[header + 2] << 8) | pkt[header + 3]);
        if (n < header)
            return -1;
    }
    return header;
}

/* iv ^= the 12-byte salt, as one 8-byte and one 4-byte word (byte loops here cost ~100 instructions a packet: the
 * compiler cannot tell `iv` from the salt). */
static void srtp_xor_salt12(uint8_t iv[12], const uint8_t *salt) {
    uint64_t a, s;
    uint32_t b, t;
    memcpy(&a, iv, 8);
    memcpy(&s, salt, 8);
    memcpy(&b, iv + 8, 4);
    memcpy(&t, salt + 8, 4);
    a ^= s;
    b ^= t;
    memcpy(iv, &a, 8);
    memcpy(iv + 8, &b, 4);
}

static void srtp_gcm_rtp_iv(const srtp_keys *k, const uint8_t *pkt, uint64_t index, uint8_t iv[12]) {
    iv[0] = iv[1] = 0;
    memcpy(iv + 2, pkt + 8, 4);
    iv[6] = (uint8_t)(index >> 40);
    iv[7] = (uint8_t)(index >> 32);
    iv[8] = (uint8_t)(index >> 24);
    iv[9] = (uint8_t)(index >> 16);
    iv[10] = (uint8_t)(index >> 8);
    iv[11] = (uint8_t)index;
    srtp_xor_salt12(iv, k->salt);
}

/* srtp_protect: `pkt` holds `*len` bytes and has room for the tag after them. */
static int srtp_ctx_protect(srtp_ctx *c, uint8_t *pkt, int *len) {
    int n = *len, header = srtp_header_length(pkt, n);
    if (header < 0)
        return SRTP_BAD_PARAM;
    int at = srtp_find_or_add(c, srtp_read32(pkt + 8));
    if (at < 0)
        return SRTP_ALLOC_FAIL;
    srtp_stream *st = &c->streams[at];
    uint64_t index;
    int32_t delta = srtp_estimate(st->index, (uint16_t)((pkt[2] << 8) | pkt[3]), &index);
    if (srtp_rtp_check(NULL, delta) == SRTP_REPLAY_OLD)
        return SRTP_REPLAY_OLD; /* a repeat is allowed (allow_repeat_tx): forwarded retransmissions reuse indices */
    srtp_rtp_accept(st, NULL, delta);
    if (c->gcm) {
        uint8_t iv[12];
        srtp_gcm_rtp_iv(&c->rtp, pkt, index, iv);
        int rc = srtp_gcm(&c->rtp, 1, iv, pkt, header, NULL, 0, pkt + header, n - header, pkt + n);
        if (rc != SRTP_OK)
            return rc;
        *len = n + SRTP_GCM_TAG;
        return SRTP_OK;
    }
    uint8_t roc[4] = {(uint8_t)(index >> 40), (uint8_t)(index >> 32), (uint8_t)(index >> 24), (uint8_t)(index >> 16)};
    if (srtp_aes_cm(&c->rtp, pkt + 8, index, pkt + header, n - header) < 0)
        return SRTP_CIPHER_FAIL;
    if (srtp_hmac80(c->rtp.mac, pkt, (size_t)n, roc, 4, pkt + n) < 0)
        return SRTP_AUTH_FAIL;
    *len = n + SRTP_CM_TAG;
    return SRTP_OK;
}

/* The window of stream `at`, allocating the windows of all streams on first use; NULL when out of memory. */
static srtp_window *srtp_window_of(srtp_ctx *c, int at) {
    if (c->windows == NULL) {
        c->windows = calloc((size_t)(c->capacity > 0 ? c->capacity : 1), sizeof *c->windows);
        if (c->windows == NULL)
            return NULL;
    }
    return &c->windows[at];
}

/* srtp_unprotect: verify, check replay, decrypt `*len` bytes of `pkt` in place. */
static int srtp_ctx_unprotect(srtp_ctx *c, uint8_t *pkt, int *len) {
    int n = *len, header = srtp_header_length(pkt, n);
    if (header < 0)
        return SRTP_BAD_PARAM;
    uint32_t ssrc = srtp_read32(pkt + 8);
    int at = srtp_find(c, ssrc);
    srtp_stream fresh = {0};
    srtp_window none = {{0}};
    srtp_window *w = &none;
    if (at >= 0 && (w = srtp_window_of(c, at)) == NULL)
        return SRTP_ALLOC_FAIL;
    srtp_stream *st = at >= 0 ? &c->streams[at] : &fresh;
    uint64_t index;
    int32_t delta = srtp_estimate(st->index, (uint16_t)((pkt[2] << 8) | pkt[3]), &index);
    int rc = srtp_rtp_check(w, delta);
    if (rc != SRTP_OK)
        return rc;
    int tag = c->gcm ? SRTP_GCM_TAG : SRTP_CM_TAG;
    if (c->gcm && n - header < tag)
        return n < tag ? SRTP_CIPHER_FAIL : SRTP_PARSE_ERR;
    if (n - header < tag)
        return SRTP_PARSE_ERR;
    if (c->gcm) {
        uint8_t iv[12];
        srtp_gcm_rtp_iv(&c->rtp, pkt, index, iv);
        rc = srtp_gcm(&c->rtp, 0, iv, pkt, header, NULL, 0, pkt + header, n - header - tag, pkt + n - tag);
        if (rc != SRTP_OK)
            return rc;
    } else {
        uint8_t roc[4] = {(uint8_t)(index >> 40), (uint8_t)(index >> 32), (uint8_t)(index >> 24),
                          (uint8_t)(index >> 16)};
        uint8_t expect[SRTP_CM_TAG];
        if (srtp_hmac80(c->rtp.mac, pkt, (size_t)(n - tag), roc, 4, expect) < 0)
            return SRTP_AUTH_FAIL;
        if (CRYPTO_memcmp(expect, pkt + n - tag, SRTP_CM_TAG) != 0)
            return SRTP_AUTH_FAIL;
        if (srtp_aes_cm(&c->rtp, pkt + 8, index, pkt + header, n - header - tag) < 0)
            return SRTP_CIPHER_FAIL;
    }
    if (at < 0) {
        if ((at = srtp_find_or_add(c, ssrc)) < 0 || (w = srtp_window_of(c, at)) == NULL)
            return SRTP_ALLOC_FAIL;
    }
    srtp_rtp_accept(&c->streams[at], w, delta);
    *len = n - tag;
    return SRTP_OK;
}

/* The 12-byte GCM IV of SRTCP (RFC 7714 §9.1): salt XOR (0^16 | SSRC | 0^16 | 0 | index). */
static void srtp_gcm_rtcp_iv(const srtp_keys *k, const uint8_t *pkt, uint32_t index, uint8_t iv[12]) {
    memset(iv, 0, 12);
    memcpy(iv + 2, pkt + 4, 4);
    iv[8] = (uint8_t)(index >> 24);
    iv[9] = (uint8_t)(index >> 16);
    iv[10] = (uint8_t)(index >> 8);
    iv[11] = (uint8_t)index;
    srtp_xor_salt12(iv, k->salt);
}

/* srtp_protect_rtcp: `pkt` has room for the tag and the 4-byte E | index trailer after `*len` bytes. */
static int srtp_ctx_protect_rtcp(srtp_ctx *c, uint8_t *pkt, int *len) {
    int n = *len;
    if (n < 8)
        return SRTP_BAD_PARAM;
    int at = srtp_find_or_add(c, srtp_read32(pkt + 4));
    if (at < 0)
        return SRTP_ALLOC_FAIL;
    srtp_stream *st = &c->streams[at];
    if (st->rtcp_start >= SRTCP_INDEX_MASK)
        return SRTP_KEY_EXPIRED;
    uint32_t index = ++st->rtcp_start;
    uint8_t trailer[4] = {(uint8_t)(0x80 | (index >> 24)), (uint8_t)(index >> 16), (uint8_t)(index >> 8),
                          (uint8_t)index};
    if (c->gcm) {
        uint8_t iv[12];
        srtp_gcm_rtcp_iv(&c->rtcp, pkt, index, iv);
        int rc = srtp_gcm(&c->rtcp, 1, iv, pkt, 8, trailer, 4, pkt + 8, n - 8, pkt + n);
        if (rc != SRTP_OK)
            return rc;
        memcpy(pkt + n + SRTP_GCM_TAG, trailer, 4);
        *len = n + SRTP_GCM_TAG + 4;
        return SRTP_OK;
    }
    memcpy(pkt + n, trailer, 4);
    if (srtp_aes_cm(&c->rtcp, pkt + 4, (uint64_t)index, pkt + 8, n - 8) < 0)
        return SRTP_CIPHER_FAIL;
    if (srtp_hmac80(c->rtcp.mac, pkt, (size_t)n + 4, NULL, 0, pkt + n + 4) < 0)
        return SRTP_AUTH_FAIL;
    *len = n + 4 + SRTP_CM_TAG;
    return SRTP_OK;
}

/* srtp_unprotect_rtcp: verify, check replay, decrypt `*len` bytes of `pkt` in place. A GCM packet without the E
 * flag is authenticated only (RFC 7714 §9.2), as libsrtp accepts it; AES-CM requires the flag. */
static int srtp_ctx_unprotect_rtcp(srtp_ctx *c, uint8_t *pkt, int *len) {
    int n = *len;
    if (n < 8 + 4)
        return SRTP_BAD_PARAM;
    int tag = c->gcm ? SRTP_GCM_TAG : SRTP_CM_TAG;
    if (n < 8 + tag + 4)
        return SRTP_BAD_PARAM;
    uint32_t ssrc = srtp_read32(pkt + 4);
    int at = srtp_find(c, ssrc);
    srtp_stream fresh = {0};
    srtp_stream *st = at >= 0 ? &c->streams[at] : &fresh;
    const uint8_t *trailer = c->gcm ? pkt + n - 4 : pkt + n - tag - 4;
    int encrypted = (trailer[0] & 0x80) != 0;
    if (!c->gcm && !encrypted)
        return SRTP_CANT_CHECK;
    uint32_t index = srtp_read32(trailer) & SRTCP_INDEX_MASK;
    int rc = srtcp_check(st, index);
    if (rc != SRTP_OK)
        return rc;
    if (c->gcm) {
        uint8_t iv[12];
        srtp_gcm_rtcp_iv(&c->rtcp, pkt, index, iv);
        int body = n - 8 - tag - 4;
        rc = encrypted ? srtp_gcm(&c->rtcp, 0, iv, pkt, 8, trailer, 4, pkt + 8, body, pkt + 8 + body)
                       : srtp_gcm(&c->rtcp, 0, iv, pkt, 8 + body, trailer, 4, pkt + 8 + body, 0, pkt + 8 + body);
        if (rc != SRTP_OK)
            return rc;
    } else {
        uint8_t expect[SRTP_CM_TAG];
        if (srtp_hmac80(c->rtcp.mac, pkt, (size_t)(n - tag), NULL, 0, expect) < 0)
            return SRTP_AUTH_FAIL;
        if (CRYPTO_memcmp(expect, pkt + n - tag, SRTP_CM_TAG) != 0)
            return SRTP_AUTH_FAIL;
        if (srtp_aes_cm(&c->rtcp, pkt + 4, (uint64_t)index, pkt + 8, n - 8 - tag - 4) < 0)
            return SRTP_CIPHER_FAIL;
    }
    if (at < 0 && (at = srtp_find_or_add(c, ssrc)) < 0)
        return SRTP_ALLOC_FAIL;
    srtcp_accept(&c->streams[at], index);
    *len = n - tag - 4;
    return SRTP_OK;
}

#endif
