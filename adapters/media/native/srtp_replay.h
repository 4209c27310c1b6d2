/* SRTP packet indices and replay windows (RFC 3711 §3.3.1 and §3.3.2): pure integer code, no crypto, no Python.
 *
 * The rules are libsrtp2 2.7's (what pylibsrtp and so the Python path run), kept bit for bit so that both paths
 * accept and refuse the same packets (tests/media/test_native_srtp_diff.py):
 *
 * - RTP (libsrtp's rdbx): per SSRC the highest packet index seen, ROC << 16 | SEQ, and a 1024-packet window of the
 *   indices already accepted below it. The index of a new sequence number is guessed from the highest one: while
 *   the highest is at most 0x8000 the ROC is taken as 0 (the guess cannot go below zero), past it the ROC that puts
 *   the packet within 2^15 of the highest (RFC 3711 Appendix A).
 * - SRTCP (libsrtp's rdb): the index travels in the packet; a 128-packet window that starts at 0 and slides when an
 *   index beyond its end arrives. The same field counts the SRTCP packets a sender has protected (libsrtp's
 *   srtp_rdb_increment), so the first index sent is 1.
 *
 * Windows are stored by age (bit `a` = the index `a` below the window's top), one representation for both. */
#ifndef CALLSD_SRTP_REPLAY_H
#define CALLSD_SRTP_REPLAY_H

#include <stdint.h>
#include <string.h>

#define SRTP_WINDOW_BITS 1024 /* the session policy's replay window, as adapters/media/srtp.py sets it */
#define SRTCP_WINDOW_BITS 128 /* libsrtp's fixed SRTCP window */
#define SRTCP_INDEX_MASK 0x7FFFFFFFu

/* libsrtp's srtp_err_status_t values for the outcomes this code reports: Python reads them as `last_error`
 * (adapters/media/srtp.py: 7 authentication, 9/10 replay) and the engine counts drops by them. */
enum {
    SRTP_OK = 0,
    SRTP_BAD_PARAM = 2,
    SRTP_ALLOC_FAIL = 3,
    SRTP_INIT_FAIL = 5,
    SRTP_AUTH_FAIL = 7,
    SRTP_CIPHER_FAIL = 8,
    SRTP_REPLAY_FAIL = 9,
    SRTP_REPLAY_OLD = 10,
    SRTP_CANT_CHECK = 14,
    SRTP_KEY_EXPIRED = 15,
    SRTP_PARSE_ERR = 21,
};

/* Per SSRC state of one session; all zero is a stream never seen (what libsrtp clones from its template). */
typedef struct {
    uint32_t ssrc;
    uint32_t rtcp_start;   /* start of the SRTCP window; on a sender, the last SRTCP index sent */
    uint64_t index;        /* highest RTP packet index accepted (ROC << 16 | SEQ) */
    uint64_t rtcp_seen[2]; /* SRTCP indices accepted, by age below rtcp_start + 127 */
} srtp_stream;

typedef struct {
    uint64_t seen[SRTP_WINDOW_BITS / 64]; /* RTP indices accepted, by age below `index` (bit 0: `index` itself) */
} srtp_window;

/* Age every bit of a `words`-word window by `by` (bits that pass the end fall off). */
static void srtp_window_age(uint64_t *w, int words, uint64_t by) {
    if (by >= (uint64_t)words * 64) {
        memset(w, 0, (size_t)words * sizeof *w);
        return;
    }
    int whole = (int)(by / 64), bits = (int)(by % 64);
    for (int i = words - 1; i >= 0; i--) {
        int from = i - whole;
        uint64_t v = from >= 0 ? w[from] << bits : 0;
        if (bits != 0 && from >= 1)
            v |= w[from - 1] >> (64 - bits);
        w[i] = v;
    }
}

static int srtp_bit(const uint64_t *w, uint64_t age) { return (int)((w[age / 64] >> (age % 64)) & 1); }
static void srtp_set_bit(uint64_t *w, uint64_t age) { w[age / 64] |= (uint64_t)1 << (age % 64); }

/* The packet index sequence number `seq` most likely means, given the highest index `local`; returns its distance
 * from `local` (> 0: newer). libsrtp's srtp_rdbx_estimate_index and srtp_index_guess. */
static int32_t srtp_estimate(uint64_t local, uint16_t seq, uint64_t *guess) {
    if (local <= 0x8000) {
        *guess = seq;
        return (int32_t)seq - (int32_t)(uint16_t)local;
    }
    uint32_t roc = (uint32_t)(local >> 16);
    int32_t at = (int32_t)(uint16_t)local, s = seq, difference;
    if (at < 0x8000) {
        if (s - at > 0x8000) {
            roc -= 1;
            difference = s - at - 0x10000;
        } else {
            difference = s - at;
        }
    } else if (at - 0x8000 > s) {
        roc += 1;
        difference = s - at + 0x10000;
    } else {
        difference = s - at;
    }
    *guess = ((uint64_t)roc << 16) | seq;
    return difference;
}

/* Replay check of an RTP index at distance `delta` (srtp_rdbx_check). `w` may be NULL for a sender, which keeps
 * no window: it only learns whether the index is older than the window. */
static int srtp_rtp_check(const srtp_window *w, int32_t delta) {
    if (delta > 0)
        return SRTP_OK;
    if (SRTP_WINDOW_BITS - 1 + delta < 0)
        return SRTP_REPLAY_OLD;
    if (w != NULL && srtp_bit(w->seen, (uint64_t)-(int64_t)delta))
        return SRTP_REPLAY_FAIL;
    return SRTP_OK;
}

/* Record an accepted RTP index at distance `delta` (srtp_rdbx_add_index; libsrtp advances by delta as a 16-bit
 * sequence number, which it always fits). */
static void srtp_rtp_accept(srtp_stream *st, srtp_window *w, int32_t delta) {
    if (delta > 0) {
        st->index += (uint16_t)delta;
        if (w != NULL) {
            srtp_window_age(w->seen, SRTP_WINDOW_BITS / 64, (uint64_t)delta);
            srtp_set_bit(w->seen, 0);
        }
    } else if (w != NULL) {
        srtp_set_bit(w->seen, (uint64_t)-(int64_t)delta);
    }
}

/* SRTCP replay check of index `i` (srtp_rdb_check). */
static int srtcp_check(const srtp_stream *st, uint32_t i) {
    if ((uint64_t)i >= (uint64_t)st->rtcp_start + SRTCP_WINDOW_BITS)
        return SRTP_OK;
    if (i < st->rtcp_start)
        return SRTP_REPLAY_OLD;
    if (srtp_bit(st->rtcp_seen, (uint64_t)st->rtcp_start + SRTCP_WINDOW_BITS - 1 - i))
        return SRTP_REPLAY_FAIL;
    return SRTP_OK;
}

/* Record an accepted SRTCP index (srtp_rdb_add_index): beyond the window, slide it so `i` is its last slot. */
static void srtcp_accept(srtp_stream *st, uint32_t i) {
    uint64_t top = (uint64_t)st->rtcp_start + SRTCP_WINDOW_BITS - 1;
    if (i < st->rtcp_start)
        return;
    if (i <= top) {
        srtp_set_bit(st->rtcp_seen, top - i);
        return;
    }
    srtp_window_age(st->rtcp_seen, 2, i - top);
    srtp_set_bit(st->rtcp_seen, 0);
    st->rtcp_start += (uint32_t)(i - top);
}

#endif
