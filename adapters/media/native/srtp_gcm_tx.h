/* The sender's SRTP transform for AEAD_AES_128_GCM (RFC 7714) on OpenSSL's libcrypto, byte-identical to libsrtp2's.
 *
 * Why: Debian builds libsrtp2 against NSS, whose PKCS#11 layers cost ~7,800 instructions per protected packet
 * (context lookups, mutexes, malloc/free around one AES-GCM call; callgrind, bench/forward_step.py): 65 % of the
 * native step's user time, paid once per egress packet. The SFU protects seven packets for every one it
 * unprotects, so the sending side is where it matters. This header keeps libsrtp2 for everything else
 * (unprotect, SRTCP, the other profiles) and does only what srtp_protect does for an AEAD profile:
 *
 * - session keys from the master key and salt with the SRTP KDF (RFC 3711 §4.3: AES-CM with the master key over
 *   the 112-bit master salt, here the 96-bit GCM salt padded with zeros, as libsrtp pads it; label 0 = the
 *   session key, label 2 = the 96-bit session salt);
 * - per SSRC, libsrtp's sender state: the highest packet index sent, the index guess from the sequence number
 *   (libsrtp's srtp_rdbx_estimate_index / srtp_index_guess) and its window rule (an index more than 1023 behind
 *   the highest is refused as too old; a repeat is allowed, as the session's allow_repeat_tx says);
 * - IV = (0x0000 || SSRC || ROC || SEQ) XOR session salt, AAD = the header through its extension, payload
 *   encrypted in place, 16-byte tag appended (RFC 7714 §8).
 * Crypto is libcrypto's (EVP AES-128-GCM and AES-128-ECB): nothing here is hand-written cryptography. The
 * differential tests compare every byte with libsrtp2's output (tests/media/test_native_gcm.py, test_native_diff).
 */
#ifndef CALLSD_SRTP_GCM_TX_H
#define CALLSD_SRTP_GCM_TX_H

#include <openssl/evp.h>
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GCM_TAG 16
#define GCM_WINDOW 1024 /* the session policy's replay window (srtp_session.h) */

typedef struct {
    uint32_t ssrc;
    uint64_t index; /* highest packet index sent (ROC << 16 | SEQ), libsrtp's rdbx index */
} gcm_stream;

typedef struct {
    EVP_CIPHER_CTX *ctx; /* keyed with the session key; the IV is set per packet */
    uint8_t salt[12];
    gcm_stream *streams;
    int count, capacity, last;
} gcm_tx;

/* Derive the session key and salt and key the cipher: 0, or -1 (libcrypto refused). */
static int gcm_tx_init(gcm_tx *g, const uint8_t master[28]) {
    memset(g, 0, sizeof *g);
    uint8_t block[2][16], out[2][16];
    for (int i = 0; i < 2; i++) {
        memset(block[i], 0, 16);
        memcpy(block[i], master + 16, 12); /* the 96-bit salt, padded to 112 bits, then two zero counter bytes */
        block[i][7] ^= (uint8_t)(i == 0 ? 0x00 : 0x02);
    }
    EVP_CIPHER_CTX *ecb = EVP_CIPHER_CTX_new();
    int len = 0, ok = ecb != NULL && EVP_EncryptInit_ex(ecb, EVP_aes_128_ecb(), NULL, master, NULL) == 1 &&
                      EVP_CIPHER_CTX_set_padding(ecb, 0) == 1 &&
                      EVP_EncryptUpdate(ecb, out[0], &len, block[0], 32) == 1 && len == 32;
    EVP_CIPHER_CTX_free(ecb);
    memset(block, 0, sizeof block);
    if (!ok)
        return -1;
    memcpy(g->salt, out[1], 12);
    g->ctx = EVP_CIPHER_CTX_new();
    ok = g->ctx != NULL && EVP_EncryptInit_ex(g->ctx, EVP_aes_128_gcm(), NULL, out[0], NULL) == 1;
    memset(out, 0, sizeof out);
    return ok ? 0 : -1;
}

static void gcm_tx_free(gcm_tx *g) {
    EVP_CIPHER_CTX_free(g->ctx);
    free(g->streams);
    memset(g, 0, sizeof *g);
}

/* The SSRC's sender state (created at index 0, as libsrtp clones its template), or NULL when out of memory. */
static gcm_stream *gcm_tx_stream(gcm_tx *g, uint32_t ssrc) {
    if (g->last < g->count && g->streams[g->last].ssrc == ssrc)
        return &g->streams[g->last];
    for (int i = 0; i < g->count; i++) {
        if (g->streams[i].ssrc == ssrc) {
            g->last = i;
            return &g->streams[i];
        }
    }
    if (g->count == g->capacity) {
        int capacity = g->capacity ? 2 * g->capacity : 8;
        gcm_stream *grown = realloc(g->streams, (size_t)capacity * sizeof *grown);
        if (grown == NULL)
            return NULL;
        g->streams = grown;
        g->capacity = capacity;
    }
    g->streams[g->count] = (gcm_stream){ssrc, 0};
    g->last = g->count;
    return &g->streams[g->count++];
}

/* libsrtp's srtp_rdbx_estimate_index: the packet index `s` most likely means, and its distance from `local`. */
static int32_t gcm_estimate(uint64_t local, uint64_t *guess, uint16_t s) {
    if (local <= 0x8000) {
        *guess = s;
        return (int32_t)s - (int32_t)(uint16_t)local;
    }
    uint32_t roc = (uint32_t)(local >> 16);
    uint16_t seq = (uint16_t)local;
    int32_t difference;
    if (seq < 0x8000) {
        if ((int32_t)s - (int32_t)seq > 0x8000) {
            roc -= 1;
            difference = (int32_t)s - (int32_t)seq - 0x10000;
        } else {
            difference = (int32_t)s - (int32_t)seq;
        }
    } else if ((int32_t)seq - 0x8000 > (int32_t)s) {
        roc += 1;
        difference = (int32_t)s - (int32_t)seq + 0x10000;
    } else {
        difference = (int32_t)s - (int32_t)seq;
    }
    *guess = ((uint64_t)roc << 16) | s;
    return difference;
}

/* srtp_protect for this profile: the packet in `pkt` (room for GCM_TAG more bytes) is protected in place. */
static srtp_err_status_t gcm_tx_protect(gcm_tx *g, uint8_t *pkt, int *len) {
    int n = *len;
    if (n < 12)
        return srtp_err_status_bad_param;
    int header = 12 + 4 * (pkt[0] & 0x0F);
    if (n < header + ((pkt[0] & 0x10) ? 4 : 0))
        return srtp_err_status_bad_param;
    if (pkt[0] & 0x10) {
        header += 4 + 4 * ((pkt[header + 2] << 8) | pkt[header + 3]);
        if (n < header)
            return srtp_err_status_bad_param;
    }
    uint32_t ssrc = ((uint32_t)pkt[8] << 24) | ((uint32_t)pkt[9] << 16) | ((uint32_t)pkt[10] << 8) | pkt[11];
    gcm_stream *st = gcm_tx_stream(g, ssrc);
    if (st == NULL)
        return srtp_err_status_alloc_fail;
    uint64_t est;
    int32_t delta = gcm_estimate(st->index, &est, (uint16_t)((pkt[2] << 8) | pkt[3]));
    if (delta <= 0 && GCM_WINDOW - 1 + delta < 0)
        return srtp_err_status_replay_old;
    uint8_t iv[12] = {0, 0, pkt[8], pkt[9], pkt[10], pkt[11], (uint8_t)(est >> 40), (uint8_t)(est >> 32),
                      (uint8_t)(est >> 24), (uint8_t)(est >> 16), (uint8_t)(est >> 8), (uint8_t)est};
    for (int i = 0; i < 12; i++)
        iv[i] ^= g->salt[i];
    int out = 0, fin = 0;
    if (EVP_EncryptInit_ex(g->ctx, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(g->ctx, NULL, &out, pkt, header) != 1 ||
        (n > header && EVP_EncryptUpdate(g->ctx, pkt + header, &out, pkt + header, n - header) != 1) ||
        EVP_EncryptFinal_ex(g->ctx, pkt + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG, pkt + n) != 1)
        return srtp_err_status_cipher_fail;
    if (delta > 0)
        st->index += (uint16_t)delta; /* srtp_index_advance takes the delta as a 16-bit sequence number */
    *len = n + GCM_TAG;
    return srtp_err_status_ok;
}

#endif
