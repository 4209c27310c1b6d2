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
#include <stdlib.h>
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

/* AES-128-GCM through libcrypto's own method table rather than its 3.0 provider interface, or NULL (the provider,
 * as srtp_gcm_iv_param says). Why: with the provider every packet's IV and tag go through OSSL_PARAM exchanges,
 * and the GCM provider's get and set functions look up every parameter name they know in the array passed
 * (OSSL_PARAM_locate and strcmp: ~900 instructions per egress packet at 200 calls, a fifth of the native step,
 * docs/performance.md "session 10"). A copy of the library's EVP_aes_128_gcm() method (EVP_CIPHER_meth_dup: the
 * same AES-NI and carry-less-multiply code, its init, ctrl and cipher functions) makes EVP take its legacy path,
 * where the IV is EVP_CipherInit_ex's and the tag is a ctrl that copies 16 bytes. Used only when
 * srtp_gcm_method_check finds it gives the same bytes and the same verdicts as the provider in this process;
 * otherwise (a libcrypto without the deprecated method API, or one whose legacy GCM differs) the provider path
 * stays. docs/adr/0054-gcm-through-the-method-table.md. */
static EVP_CIPHER *srtp_gcm_method;
/* Its own functions (EVP_CIPHER_meth_get_*), which EVP's legacy path calls after its checks: srtp_gcm_by_method
 * calls them directly, as EVP would for a cipher with EVP_CIPH_FLAG_CUSTOM_CIPHER (~250 instructions of EVP
 * wrappers per egress packet). */
static int (*srtp_gcm_init_fn)(EVP_CIPHER_CTX *, const unsigned char *, const unsigned char *, int);
static int (*srtp_gcm_do_fn)(EVP_CIPHER_CTX *, unsigned char *, const unsigned char *, size_t);
static int (*srtp_gcm_ctrl_fn)(EVP_CIPHER_CTX *, int, int, void *);

static int srtp_gcm(srtp_keys *k, int encrypt, const uint8_t iv[12], const uint8_t *aad, int aad_len,
                    const uint8_t *aad2, int aad2_len, uint8_t *buf, int len, uint8_t *tag);

/* The GCM cipher new contexts are keyed with. */
static const EVP_CIPHER *srtp_gcm_cipher(void) {
    return srtp_gcm_method != NULL ? srtp_gcm_method : EVP_aes_128_gcm();
}

/* Seal `plain` (48 bytes, 12 of additional data first) under IV `iv` on keyed context `c` through the plain EVP
 * calls both kinds of context take: ciphertext then tag into `out`. 0 or -1. */
static int srtp_gcm_seal_sample(EVP_CIPHER_CTX *c, const uint8_t iv[12], const uint8_t plain[48], uint8_t out[52]) {
    int len = 0, fin = 0;
    int ok = EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) == 1 && EVP_EncryptUpdate(c, NULL, &len, plain, 12) == 1 &&
             EVP_EncryptUpdate(c, out, &len, plain + 12, 36) == 1 && EVP_EncryptFinal_ex(c, out + len, &fin) == 1 &&
             len + fin == 36 && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SRTP_GCM_TAG, out + 36) == 1;
    return ok ? 0 : -1;
}

/* Open `sealed` (srtp_gcm_seal_sample's) on `c`: 1 when the tag verifies and the plaintext is `plain`, else 0. */
static int srtp_gcm_open_sample(EVP_CIPHER_CTX *c, const uint8_t iv[12], const uint8_t plain[48],
                                const uint8_t sealed[52]) {
    uint8_t tag[SRTP_GCM_TAG], opened[36];
    int len = 0, fin = 0;
    memcpy(tag, sealed + 36, sizeof tag);
    return EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) == 1 &&
           EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, SRTP_GCM_TAG, tag) == 1 &&
           EVP_DecryptUpdate(c, NULL, &len, plain, 12) == 1 && EVP_DecryptUpdate(c, opened, &len, sealed, 36) == 1 &&
           EVP_DecryptFinal_ex(c, opened + len, &fin) == 1 && len + fin == 36 && memcmp(opened, plain + 12, 36) == 0;
}

/* The method-table copy of AES-128-GCM when it seals two samples exactly as the provider does, opens them, and
 * refuses one with a flipped tag bit; else NULL. */
static EVP_CIPHER *srtp_gcm_method_check(void) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    EVP_CIPHER *method = EVP_CIPHER_meth_dup(EVP_aes_128_gcm());
#pragma GCC diagnostic pop
    if (method == NULL)
        return NULL;
    static const uint8_t key[16] = {7, 1, 2, 3}, ivs[2][12] = {{1}, {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}};
    uint8_t plain[48];
    for (int i = 0; i < 48; i++)
        plain[i] = (uint8_t)(i * 37 + 5);
    EVP_CIPHER_CTX *provider = EVP_CIPHER_CTX_new(), *legacy = EVP_CIPHER_CTX_new();
    int same = provider != NULL && legacy != NULL &&
               EVP_EncryptInit_ex(provider, EVP_aes_128_gcm(), NULL, key, NULL) == 1 &&
               EVP_EncryptInit_ex(legacy, method, NULL, key, NULL) == 1;
    for (int i = 0; i < 2 && same; i++) {
        uint8_t by_provider[52], by_method[52];
        same = srtp_gcm_seal_sample(provider, ivs[i], plain, by_provider) == 0 &&
               srtp_gcm_seal_sample(legacy, ivs[i], plain, by_method) == 0 &&
               memcmp(by_provider, by_method, sizeof by_method) == 0 &&
               srtp_gcm_open_sample(legacy, ivs[i], plain, by_method) == 1;
        by_method[40] ^= 1;
        same = same && srtp_gcm_open_sample(legacy, ivs[i], plain, by_method) == 0;
    }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    srtp_gcm_init_fn = EVP_CIPHER_meth_get_init(method);
    srtp_gcm_do_fn = EVP_CIPHER_meth_get_do_cipher(method);
    srtp_gcm_ctrl_fn = EVP_CIPHER_meth_get_ctrl(method);
    same = same && srtp_gcm_init_fn != NULL && srtp_gcm_do_fn != NULL && srtp_gcm_ctrl_fn != NULL &&
           (EVP_CIPHER_get_flags(method) & EVP_CIPH_FLAG_CUSTOM_CIPHER);
#pragma GCC diagnostic pop
    /* and srtp_gcm itself on the method's functions, against the provider's bytes: seal, open, refuse a forgery */
    srtp_gcm_method = method;
    srtp_keys k = {.cipher = legacy, .encrypting = 0};
    for (int i = 0; i < 2 && same; i++) {
        uint8_t by_provider[52], buf[36], tag[SRTP_GCM_TAG];
        memcpy(buf, plain + 12, 36);
        same = srtp_gcm_seal_sample(provider, ivs[i], plain, by_provider) == 0 &&
               srtp_gcm(&k, 1, ivs[i], plain, 12, NULL, 0, buf, 36, tag) == SRTP_OK &&
               memcmp(buf, by_provider, 36) == 0 && memcmp(tag, by_provider + 36, SRTP_GCM_TAG) == 0 &&
               srtp_gcm(&k, 0, ivs[i], plain, 12, NULL, 0, buf, 36, tag) == SRTP_OK &&
               memcmp(buf, plain + 12, 36) == 0;
        memcpy(buf, by_provider, 36);
        tag[3] ^= 1;
        same = same && srtp_gcm(&k, 0, ivs[i], plain, 12, NULL, 0, buf, 36, tag) == SRTP_AUTH_FAIL;
    }
    srtp_gcm_method = NULL;
    EVP_CIPHER_CTX_free(provider);
    EVP_CIPHER_CTX_free(legacy);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (!same) {
        EVP_CIPHER_meth_free(method);
        return NULL;
    }
#pragma GCC diagnostic pop
    return method;
}

static int srtp_keys_global_init(void) {
    if (srtp_hmac == NULL)
        srtp_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (srtp_gcm_iv_param < 0)
        srtp_gcm_iv_param = srtp_gcm_param_check();
    const char *method = getenv("CALLSD_NATIVE_GCM_METHOD"); /* "0": the provider path (an A/B switch) */
    if (srtp_gcm_method == NULL && !(method != NULL && strcmp(method, "0") == 0))
        srtp_gcm_method = srtp_gcm_method_check();
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
        EVP_EncryptInit_ex(k->cipher, gcm ? srtp_gcm_cipher() : EVP_aes_128_ctr(), NULL, key, NULL) != 1)
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
static int srtp_gcm_by_method(srtp_keys *k, int encrypt, const uint8_t iv[12], const uint8_t *aad, int aad_len,
                              const uint8_t *aad2, int aad2_len, uint8_t *buf, int len, uint8_t *tag) {
    EVP_CIPHER_CTX *c = k->cipher;
    if (k->encrypting != encrypt) { /* EVP sets the context's direction; the same direction again: the IV alone */
        if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, encrypt) != 1)
            return SRTP_CIPHER_FAIL;
        k->encrypting = encrypt;
    } else if (srtp_gcm_init_fn(c, NULL, iv, encrypt) != 1) {
        return SRTP_CIPHER_FAIL;
    }
    if ((!encrypt && srtp_gcm_ctrl_fn(c, EVP_CTRL_AEAD_SET_TAG, SRTP_GCM_TAG, tag) != 1) ||
        (aad_len > 0 && srtp_gcm_do_fn(c, NULL, aad, (size_t)aad_len) < 0) ||
        (aad2_len > 0 && srtp_gcm_do_fn(c, NULL, aad2, (size_t)aad2_len) < 0) ||
        (len > 0 && srtp_gcm_do_fn(c, buf, buf, (size_t)len) < 0))
        return SRTP_CIPHER_FAIL;
    if (srtp_gcm_do_fn(c, NULL, NULL, 0) < 0) /* the tag: computed, or checked */
        return encrypt ? SRTP_CIPHER_FAIL : SRTP_AUTH_FAIL;
    if (encrypt && srtp_gcm_ctrl_fn(c, EVP_CTRL_AEAD_GET_TAG, SRTP_GCM_TAG, tag) != 1)
        return SRTP_CIPHER_FAIL;
    return SRTP_OK;
}

static int srtp_gcm(srtp_keys *k, int encrypt, const uint8_t iv[12], const uint8_t *aad, int aad_len,
                    const uint8_t *aad2, int aad2_len, uint8_t *buf, int len, uint8_t *tag) {
    if (srtp_gcm_method != NULL) /* ADR 0054 */
        return srtp_gcm_by_method(k, encrypt, iv, aad, aad_len, aad2, aad2_len, buf, len, tag);
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
