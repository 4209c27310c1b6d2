/* SrtpSession: one SRTP session (one direction of one peer) as a Python object, on srtp_transform.h (OpenSSL's
 * libcrypto), with the policy adapters/media/srtp.py builds through pylibsrtp: profile from DTLS-SRTP, any SSRC,
 * replay window 1024, repeats allowed on send. Included once per extension (each is one translation unit):
 * _engine.c, and peer/_fastpeer.c for the load tool. */
#ifndef CALLSD_SRTP_SESSION_H
#define CALLSD_SRTP_SESSION_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include "send_epoch.h"
#include "srtp_transform.h"

#define BUF 2048
#define TRAILER (4 + 16 + 128) /* SRTCP index + longest tag + MKI, as pylibsrtp reserves */
#define MAX_PACKET (BUF - TRAILER)

typedef struct {
    PyObject_HEAD
    srtp_ctx ctx;
    int last_error;
} SrtpSession;

static int session_protect(SrtpSession *s, uint8_t *pkt, int *len) { return srtp_ctx_protect(&s->ctx, pkt, len); }
static int session_unprotect(SrtpSession *s, uint8_t *pkt, int *len) {
    return srtp_ctx_unprotect(&s->ctx, pkt, len);
}

/* One scratch buffer for every session: a transform copies the packet in, runs in place and copies the result out
 * within one call that holds the GIL, so no two calls ever use it at once. */
static uint8_t srtp_scratch[BUF];

static PyTypeObject SrtpSessionType;

static PyObject *SrtpSession_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"profile", "key", "outbound", "derive", NULL};
    int profile, outbound, derive = 1;
    const char *key;
    Py_ssize_t key_len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy#p|p", kwlist, &profile, &key, &key_len, &outbound, &derive))
        return NULL;
    (void)outbound; /* the direction is in how the session is used: a sender keeps no replay window */
    if (srtp_keys_global_init() < 0) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto has no HMAC");
        return NULL;
    }
    SrtpSession *self = (SrtpSession *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    int rc = srtp_ctx_init(&self->ctx, profile, (const uint8_t *)key, (size_t)key_len, derive);
    if (rc != SRTP_OK) {
        Py_DECREF(self);
        if (rc == SRTP_BAD_PARAM)
            PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d or key of %zd bytes too short", profile,
                         key_len);
        else
            PyErr_Format(PyExc_ValueError, "SRTP session setup failed (status %d)", rc);
        return NULL;
    }
    return (PyObject *)self;
}

static void SrtpSession_dealloc(SrtpSession *self) {
    send_state_epoch++; /* a route may hold it, borrowed, as its transmit session (send_state.h) */
    srtp_ctx_free(&self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

typedef int (*transform_fn)(srtp_ctx *, uint8_t *, int *);

/* One transform of a copy of `arg` in the scratch buffer; None (status in last_error) when it is refused. */
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
    int rc = fn(&self->ctx, srtp_scratch, &len);
    if (rc != SRTP_OK) {
        self->last_error = rc;
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)srtp_scratch, len);
}

static PyObject *SrtpSession_protect(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_ctx_protect);
}
static PyObject *SrtpSession_protect_rtcp(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_ctx_protect_rtcp);
}
static PyObject *SrtpSession_unprotect(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_ctx_unprotect);
}
static PyObject *SrtpSession_unprotect_rtcp(SrtpSession *self, PyObject *arg) {
    return SrtpSession_run(self, arg, srtp_ctx_unprotect_rtcp);
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
    {"last_error", (getter)SrtpSession_get_last_error, NULL, "libsrtp-numbered status of the last failure", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SrtpSessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.SrtpSession",
    .tp_basicsize = sizeof(SrtpSession),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SrtpSession(profile, key, outbound, derive=True): one SRTP session (one direction of one peer). "
              "derive=False takes session keys (key | salt [| auth key]) instead of the DTLS master key and salt.",
    .tp_new = SrtpSession_new,
    .tp_dealloc = (destructor)SrtpSession_dealloc,
    .tp_methods = SrtpSession_methods,
    .tp_getset = SrtpSession_getset,
};

/* kdf(master_key, master_salt, label, length): the SRTP key derivation (RFC 3711 §4.3), for the known-answer
 * test of RFC 3711 B.3. */
__attribute__((unused)) static PyObject *srtp_kdf_py(PyObject *module, PyObject *args) {
    (void)module;
    const char *key, *salt;
    Py_ssize_t key_len, salt_len;
    int label, length;
    if (!PyArg_ParseTuple(args, "y#y#ii", &key, &key_len, &salt, &salt_len, &label, &length))
        return NULL;
    uint8_t out[96];
    if (key_len != SRTP_MASTER_KEY || salt_len > SRTP_CM_SALT || label < 0 || label > 255 || length < 0 ||
        length > (int)sizeof out || srtp_kdf((const uint8_t *)key, (const uint8_t *)salt, (size_t)salt_len,
                                             (uint8_t)label, out, length) < 0) {
        PyErr_SetString(PyExc_ValueError, "kdf: 16-byte key, salt of at most 14 bytes, label 0-255, length 0-96");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)out, length);
}

#endif
