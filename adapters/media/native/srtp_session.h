/* SrtpSession: one libsrtp session (Debian's libsrtp2), one direction of one peer, with the policy
 * adapters/media/srtp.py builds through pylibsrtp (profile from DTLS-SRTP, SSRC_ANY_{IN,OUT}BOUND, replay window 1024,
 * allow_repeat_tx). Included once, by _engine.c (the extension is one translation unit). */
#ifndef CALLSD_SRTP_SESSION_H
#define CALLSD_SRTP_SESSION_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <srtp2/srtp.h>
#include <stdlib.h>
#include <string.h>

#include "srtp_gcm_tx.h"

#define BUF 2048
#define TRAILER (4 + 16 + 128) /* SRTCP index + longest tag + MKI, as pylibsrtp reserves */
#define MAX_PACKET (BUF - TRAILER)

/* ---- SrtpSession -------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    srtp_t srtp;
    int last_error;
    gcm_tx *gcm; /* the sender's RTP transform for AEAD_AES_128_GCM on libcrypto (srtp_gcm_tx.h); NULL: libsrtp's */
} SrtpSession;

/* srtp_protect, or its libcrypto twin for an outbound AEAD_AES_128_GCM session. */
static srtp_err_status_t session_protect(SrtpSession *s, void *pkt, int *len) {
    if (s->gcm != NULL)
        return gcm_tx_protect(s->gcm, (uint8_t *)pkt, len);
    return srtp_protect(s->srtp, pkt, len);
}

/* One scratch buffer for every session: a transform copies the packet in, runs libsrtp in place and copies the
 * result out within one call that holds the GIL, so no two calls ever use it at once. Per session it cost 2 KiB
 * per direction (4 KiB of a ~155 KiB session, bench/memory.py). */
static uint8_t srtp_scratch[BUF];

static PyTypeObject SrtpSessionType;

static PyObject *SrtpSession_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"profile", "key", "outbound", NULL};
    int profile, outbound;
    const char *key;
    Py_ssize_t key_len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy#p", kwlist, &profile, &key, &key_len, &outbound))
        return NULL;
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    if (srtp_crypto_policy_set_from_profile_for_rtp(&policy.rtp, (srtp_profile_t)profile) ||
        srtp_crypto_policy_set_from_profile_for_rtcp(&policy.rtcp, (srtp_profile_t)profile)) {
        PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d", profile);
        return NULL;
    }
    Py_ssize_t need = (Py_ssize_t)(srtp_profile_get_master_key_length((srtp_profile_t)profile) +
                                   srtp_profile_get_master_salt_length((srtp_profile_t)profile));
    if (key_len < need) {
        PyErr_Format(PyExc_ValueError, "key must contain at least %zd bytes", need);
        return NULL;
    }
    unsigned char material[64];
    if (key_len > (Py_ssize_t)sizeof material) {
        PyErr_SetString(PyExc_ValueError, "key too long");
        return NULL;
    }
    memcpy(material, key, (size_t)key_len);
    policy.key = material;
    policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    policy.window_size = 1024;
    policy.allow_repeat_tx = 1;
    policy.next = NULL;
    SrtpSession *self = (SrtpSession *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    srtp_err_status_t rc = srtp_create(&self->srtp, &policy);
    if (rc != srtp_err_status_ok)
        self->srtp = NULL;
    /* CALLSD_NATIVE_GCM_TX=libsrtp keeps libsrtp's transform (an A/B switch for bench/forward_step.py) */
    const char *choice = getenv("CALLSD_NATIVE_GCM_TX");
    int own_gcm = rc == srtp_err_status_ok && outbound && profile == srtp_profile_aead_aes_128_gcm &&
                  !(choice != NULL && strcmp(choice, "libsrtp") == 0);
    if (own_gcm) {
        self->gcm = PyMem_Calloc(1, sizeof *self->gcm);
        if (self->gcm == NULL || gcm_tx_init(self->gcm, material) < 0) {
            rc = srtp_err_status_init_fail;
            if (self->gcm != NULL)
                gcm_tx_free(self->gcm);
            PyMem_Free(self->gcm);
            self->gcm = NULL;
        }
    }
    memset(material, 0, sizeof material);
    if (rc != srtp_err_status_ok) {
        Py_DECREF(self);
        PyErr_Format(PyExc_ValueError, "srtp_create failed (status %d)", (int)rc);
        return NULL;
    }
    return (PyObject *)self;
}

static void SrtpSession_dealloc(SrtpSession *self) {
    if (self->srtp != NULL)
        srtp_dealloc(self->srtp);
    if (self->gcm != NULL) {
        gcm_tx_free(self->gcm);
        PyMem_Free(self->gcm);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

typedef srtp_err_status_t (*transform_fn)(srtp_t, void *, int *);

/* One transform of a copy of `arg` in the scratch buffer: `fn` on the libsrtp session, or session_protect. */
static PyObject *SrtpSession_run(SrtpSession *self, PyObject *arg, transform_fn fn) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len > MAX_PACKET) {
        PyBuffer_Release(&view);
        self->last_error = 6;
        Py_RETURN_NONE;
    }
    memcpy(srtp_scratch, view.buf, (size_t)view.len);
    int len = (int)view.len;
    PyBuffer_Release(&view);
    srtp_err_status_t rc = fn != NULL ? fn(self->srtp, srtp_scratch, &len) : session_protect(self, srtp_scratch, &len);
    if (rc != srtp_err_status_ok) {
        self->last_error = (int)rc;
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)srtp_scratch, len);
}

static PyObject *SrtpSession_protect(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, NULL);
}
static PyObject *SrtpSession_protect_rtcp(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_protect_rtcp);
}
static PyObject *SrtpSession_unprotect(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_unprotect);
}
static PyObject *SrtpSession_unprotect_rtcp(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_unprotect_rtcp);
}

static PyObject *SrtpSession_get_last_error(SrtpSession *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->last_error);
}

static PyMethodDef SrtpSession_methods[] = {
    {"protect", (PyCFunction)SrtpSession_protect, METH_O, "SRTP-protect an RTP packet; None on failure."},
    {"protect_rtcp", (PyCFunction)SrtpSession_protect_rtcp, METH_O, "SRTCP-protect; None on failure."},
    {"unprotect", (PyCFunction)SrtpSession_unprotect, METH_O, "Verify and decrypt SRTP; None on failure."},
    {"unprotect_rtcp", (PyCFunction)SrtpSession_unprotect_rtcp, METH_O, "Verify and decrypt SRTCP."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SrtpSession_getset[] = {
    {"last_error", (getter)SrtpSession_get_last_error, NULL, "libsrtp status of the last failure", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SrtpSessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.SrtpSession",
    .tp_basicsize = sizeof(SrtpSession),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SrtpSession(profile, key, outbound): one libsrtp session (one direction of one peer).",
    .tp_new = SrtpSession_new,
    .tp_dealloc = (destructor)SrtpSession_dealloc,
    .tp_methods = SrtpSession_methods,
    .tp_getset = SrtpSession_getset,
};

#endif
