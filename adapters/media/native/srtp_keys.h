/* SRTP session keys on OpenSSL's libcrypto: the key derivation of RFC 3711 §4.3 and the keyed cipher and MAC
 * contexts of one session (one direction of one peer), for the two profiles callsd negotiates (adapters/media/dtls.py
 * SRTP_PROFILES): AEAD_AES_128_GCM (RFC 7714) and AES_CM_128_HMAC_SHA1_80 (RFC 3711).
 *
 * Why not libsrtp2: Debian builds it on NSS, whose PKCS#11 layers cost ~17 KiB per session and thousands of
 * instructions per packet (docs/adr/0026-native-srtp-on-libcrypto.md). Everything here is a libcrypto primitive
 * (EVP AES-128-CTR, AES-128-GCM, HMAC-SHA1); this file only says which keys and IVs go in. */
#ifndef CALLSD_SRTP_KEYS_H
#define CALLSD_SRTP_KEYS_H

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdint.h>
#include <string.h>

#include "srtp_replay.h" /* the status codes */

/* libsrtp's srtp_profile_t numbers (the ids DTLS-SRTP profiles map to through pylibsrtp's Policy) */
#define SRTP_PROFILE_AES128_CM_SHA1_80 1
#define SRTP_PROFILE_AEAD_AES_128_GCM 7

#define SRTP_MASTER_KEY 16
#define SRTP_AUTH_KEY 20 /* HMAC-SHA1 session key */
#define SRTP_CM_SALT 14
#define SRTP_GCM_SALT 12
#define SRTP_GCM_TAG 16
#define SRTP_CM_TAG 10 /* HMAC-SHA1-80 */

/* One of a session's two key sets (labels 0-2 for SRTP, 3-5 for SRTCP). */
typedef struct {
    EVP_CIPHER_CTX *cipher; /* AES-128-GCM or AES-128-CTR, keyed; the IV is set per packet */
    EVP_MAC_CTX *mac;       /* HMAC-SHA1 keyed with the auth key (AES-CM profile only) */
    uint8_t salt[SRTP_CM_SALT];
    int encrypting; /* the direction `cipher` was last initialized for (srtp_gcm sets it only when it changes) */
} srtp_keys;

static EVP_MAC *srtp_hmac; /* fetched once (srtp_keys_global_init) */

/* 1 when a GCM context takes each packet's IV as a parameter (srtp_gcm_set), 0 when it takes it through
 * EVP_CipherInit_ex. Why: OpenSSL 3.0's EVP_CipherInit_ex asks the provider for the IV length on every call that
 * passes an IV (EVP_CIPHER_CTX_get_iv_length: an OSSL_PARAM query whose answer walks seven parameter names with
 * strcmp, ~630 instructions a packet, half the cost of the encryption of a 160-byte payload). The parameter
 * OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED with length -1 (EVP_CTRL_GCM_SET_IV_FIXED, -1: "restore the whole IV", in
 * OpenSSL's GCM since 1.0.1 and in its 3.x provider) sets the same 12 bytes without that query. It is used only
 * when srtp_gcm_param_check finds it gives the same bytes as the EVP_CipherInit_ex path in this process. */
static int srtp_gcm_iv_param = -1;

static int srtp_gcm_set(EVP_CIPHER_CTX *c, int *encrypting, int encrypt, const uint8_t iv[12], uint8_t *tag);

/* Encrypt one fixed packet with IV `iv` on context `c` keyed with zeros: ciphertext and tag into `out`. 0 or -1. */
static int srtp_gcm_sample(EVP_CIPHER_CTX *c, int *encrypting, const uint8_t iv[12], uint8_t out[48]) {
    static const uint8_t plain[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    int len = 0;
    OSSL_PARAM tag[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + 32, SRTP_GCM_TAG),
                        OSSL_PARAM_END};
    return srtp_gcm_set(c, encrypting, 1, iv, NULL) == 0 && EVP_EncryptUpdate(c, out, &len, plain, 32) == 1 &&
                   EVP_EncryptFinal_ex(c, out + len, &len) == 1 && EVP_CIPHER_CTX_get_params(c, tag) == 1
               ? 0
               : -1;
}

/* Whether the IV parameter sets a reused context's IV exactly as EVP_CipherInit_ex does (1) or not (0): two
 * packets under different IVs each way, compared byte for byte. The "-1: whole IV" case is OpenSSL 3's. */
static int srtp_gcm_param_check(void) {
    if ((OpenSSL_version_num() >> 28) != 3)
        return 0;
    static const uint8_t key[16] = {0}, first[12] = {1}, second[12] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
    uint8_t by_init[2][48], by_param[2][48];
    int same = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c != NULL && EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, NULL) == 1) {
        int encrypting = 1;
        srtp_gcm_iv_param = 0;
        int ok = srtp_gcm_sample(c, &encrypting, first, by_init[0]) == 0 &&
                 srtp_gcm_sample(c, &encrypting, second, by_init[1]) == 0;
        srtp_gcm_iv_param = 1;
        ok = ok && srtp_gcm_sample(c, &encrypting, first, by_param[0]) == 0 &&
             srtp_gcm_sample(c, &encrypting, second, by_param[1]) == 0;
        same = ok && memcmp(by_init, by_param, sizeof by_init) == 0 && memcmp(by_init[0], by_init[1], 48) != 0;
    }
    EVP_CIPHER_CTX_free(c);
    return same;
}

static int srtp_keys_global_init(void) {
    if (srtp_hmac == NULL)
        srtp_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (srtp_gcm_iv_param < 0)
        srtp_gcm_iv_param = srtp_gcm_param_check();
    return srtp_hmac != NULL ? 0 : -1;
}

/* The SRTP KDF with key derivation rate 0 (RFC 3711 §4.3.1): `length` bytes of AES-CM keystream under the master
 * key, with the IV = master salt (right-padded with zeros to 14 bytes, as libsrtp pads a 12-byte GCM salt) XOR the
 * label in byte 7, times 2^16. 0, or -1 when libcrypto refuses. */
static int srtp_kdf(const uint8_t *master_key, const uint8_t *master_salt, size_t salt_len, uint8_t label,
                    uint8_t *out, int length) {
    uint8_t iv[16] = {0};
    memcpy(iv, master_salt, salt_len < SRTP_CM_SALT ? salt_len : SRTP_CM_SALT);
    iv[7] ^= label;
    uint8_t zeros[96] = {0};
    if (length < 0 || length > (int)sizeof zeros)
        return -1;
    EVP_CIPHER_CTX *ctr = EVP_CIPHER_CTX_new();
    int len = 0, ok = ctr != NULL && EVP_EncryptInit_ex(ctr, EVP_aes_128_ctr(), NULL, master_key, iv) == 1 &&
                      EVP_EncryptUpdate(ctr, out, &len, zeros, length) == 1 && len == length;
    EVP_CIPHER_CTX_free(ctr);
    return ok ? 0 : -1;
}

static void srtp_keys_free(srtp_keys *k) {
    EVP_CIPHER_CTX_free(k->cipher);
    EVP_MAC_CTX_free(k->mac);
    memset(k, 0, sizeof *k);
}

/* Key `k` from session keys already derived: the cipher key, the salt and (AES-CM) the auth key. 0 or -1. */
static int srtp_keys_set(srtp_keys *k, int gcm, const uint8_t *key, const uint8_t *salt, const uint8_t *auth) {
    memset(k, 0, sizeof *k);
    memcpy(k->salt, salt, gcm ? SRTP_GCM_SALT : SRTP_CM_SALT);
    k->cipher = EVP_CIPHER_CTX_new();
    if (k->cipher == NULL ||
        EVP_EncryptInit_ex(k->cipher, gcm ? EVP_aes_128_gcm() : EVP_aes_128_ctr(), NULL, key, NULL) != 1)
        return -1;
    k->encrypting = 1;
    if (gcm)
        return 0;
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    k->mac = EVP_MAC_CTX_new(srtp_hmac);
    if (k->mac == NULL || EVP_MAC_init(k->mac, auth, SRTP_AUTH_KEY, params) != 1)
        return -1;
    return 0;
}

/* Derive and key one key set from the master key and salt: labels `first`, `first + 1` (auth), `first + 2`. */
static int srtp_keys_derive(srtp_keys *k, int gcm, const uint8_t *master_key, const uint8_t *master_salt,
                            uint8_t first) {
    size_t salt_len = gcm ? SRTP_GCM_SALT : SRTP_CM_SALT;
    uint8_t key[SRTP_MASTER_KEY], salt[SRTP_CM_SALT], auth[SRTP_AUTH_KEY];
    int rc = srtp_kdf(master_key, master_salt, salt_len, first, key, sizeof key) < 0 ||
                     srtp_kdf(master_key, master_salt, salt_len, (uint8_t)(first + 2), salt, (int)salt_len) < 0 ||
                     (!gcm && srtp_kdf(master_key, master_salt, salt_len, (uint8_t)(first + 1), auth, sizeof auth) < 0)
                 ? -1
                 : srtp_keys_set(k, gcm, key, salt, auth);
    memset(key, 0, sizeof key);
    memset(salt, 0, sizeof salt);
    memset(auth, 0, sizeof auth);
    return rc;
}

/* HMAC-SHA1-80 over `a` then `b` (the packet, then the ROC or nothing) into `tag`. 0 or -1. */
static int srtp_hmac80(EVP_MAC_CTX *mac, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                       uint8_t tag[SRTP_CM_TAG]) {
    uint8_t full[20];
    size_t got = 0;
    if (EVP_MAC_init(mac, NULL, 0, NULL) != 1 || EVP_MAC_update(mac, a, alen) != 1 ||
        (blen > 0 && EVP_MAC_update(mac, b, blen) != 1) || EVP_MAC_final(mac, full, &got, sizeof full) != 1 ||
        got != sizeof full)
        return -1;
    memcpy(tag, full, SRTP_CM_TAG);
    return 0;
}

/* AES-CM (RFC 3711 §4.1.1) of `buf` in place, counter block = (salt || 0x0000) XOR (0^32 || SSRC || index << 16);
 * `ssrc` points at the 4 SSRC bytes of the packet. 0 or -1. */
static int srtp_aes_cm(srtp_keys *k, const uint8_t *ssrc, uint64_t index, uint8_t *buf, int len) {
    uint8_t iv[16] = {0};
    memcpy(iv + 4, ssrc, 4);
    for (int i = 0; i < 6; i++)
        iv[8 + i] = (uint8_t)(index >> (40 - 8 * i));
    for (int i = 0; i < SRTP_CM_SALT; i++)
        iv[i] ^= k->salt[i];
    int out = 0;
    return EVP_EncryptInit_ex(k->cipher, NULL, NULL, NULL, iv) == 1 &&
                   (len == 0 || EVP_EncryptUpdate(k->cipher, buf, &out, buf, len) == 1)
               ? 0
               : -1;
}

/* Start a packet on a keyed GCM context: its direction (only when it changes: the context keeps it), the IV, and
 * for a decryption the expected `tag`, with as few OSSL_PARAM exchanges as OpenSSL 3.0 allows (srtp_gcm_iv_param).
 * 0 or -1. */
static int srtp_gcm_set(EVP_CIPHER_CTX *c, int *encrypting, int encrypt, const uint8_t iv[12], uint8_t *tag) {
    OSSL_PARAM params[3] = {OSSL_PARAM_END, OSSL_PARAM_END, OSSL_PARAM_END};
    int n = 0;
    if (!encrypt)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, SRTP_GCM_TAG);
    if (srtp_gcm_iv_param != 1)
        return EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, encrypt) == 1 &&
                       (n == 0 || EVP_CIPHER_CTX_set_params(c, params) == 1)
                   ? 0
                   : -1;
    if (*encrypting != encrypt) {
        if (EVP_CipherInit_ex(c, NULL, NULL, NULL, NULL, encrypt) != 1)
            return -1;
        *encrypting = encrypt;
    }
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED, (void *)iv, (size_t)-1);
    return EVP_CIPHER_CTX_set_params(c, params) == 1 ? 0 : -1;
}

/* AES-GCM (RFC 7714 §8-9) with `iv` (already XORed with the salt), additional data `aad` (+ `aad2`), `len` bytes
 * of `buf` in place, and the 16-byte `tag`: written when `encrypt`, checked otherwise. SRTP_OK, SRTP_AUTH_FAIL (a
 * tag that does not match) or SRTP_CIPHER_FAIL. The direction's own EVP calls and the tag as a parameter, not
 * EVP_Cipher* and EVP_CIPHER_CTX_ctrl: each of those adds a dispatch or a ctrl-to-parameter translation per call
 * (~150 instructions per packet in callgrind). */
static int srtp_gcm(srtp_keys *k, int encrypt, const uint8_t iv[12], const uint8_t *aad, int aad_len,
                    const uint8_t *aad2, int aad2_len, uint8_t *buf, int len, uint8_t *tag) {
    EVP_CIPHER_CTX *c = k->cipher;
    int out = 0;
    if (encrypt) {
        OSSL_PARAM tag_param[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, SRTP_GCM_TAG),
                                  OSSL_PARAM_END};
        if (srtp_gcm_set(c, &k->encrypting, 1, iv, NULL) < 0 ||
            (aad_len > 0 && EVP_EncryptUpdate(c, NULL, &out, aad, aad_len) != 1) ||
            (aad2_len > 0 && EVP_EncryptUpdate(c, NULL, &out, aad2, aad2_len) != 1) ||
            (len > 0 && EVP_EncryptUpdate(c, buf, &out, buf, len) != 1) ||
            EVP_EncryptFinal_ex(c, buf + len, &out) != 1 || EVP_CIPHER_CTX_get_params(c, tag_param) != 1)
            return SRTP_CIPHER_FAIL;
        return SRTP_OK;
    }
    if (srtp_gcm_set(c, &k->encrypting, 0, iv, tag) < 0 ||
        (aad_len > 0 && EVP_DecryptUpdate(c, NULL, &out, aad, aad_len) != 1) ||
        (aad2_len > 0 && EVP_DecryptUpdate(c, NULL, &out, aad2, aad2_len) != 1) ||
        (len > 0 && EVP_DecryptUpdate(c, buf, &out, buf, len) != 1))
        return SRTP_CIPHER_FAIL;
    return EVP_DecryptFinal_ex(c, buf + len, &out) == 1 ? SRTP_OK : SRTP_AUTH_FAIL;
}

#endif
