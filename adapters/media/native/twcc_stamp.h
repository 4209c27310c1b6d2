/* The transport-wide sequence number on the way out, in C: core/wire/transport_seq.py's rules and
 * adapters/media/twcc_send.py's TransportSequencer.stamp bookkeeping, on the same Python object.
 *
 * Why: with the forwarding itself in C, the Python `stamp` called once per egress packet was the largest Python cost
 * left in the server under the capacity shape (a steady-window cProfile and perf, docs/performance.md 2026-11-29
 * 13:20; docs/adr/0029-egress-runtime.md). The sequencer stays a Python object that owns the numbering and the send
 * history (probing.py sets its cluster, estimates.py reads its history through `results`); this file only does what
 * `stamp` does to it, reading and writing the same fields, so the Python path (which calls `stamp`) and the native
 * one leave identical state (tests/media/test_native_diff.py compares it).
 *
 * The rules themselves are twcc_rules.h (no Python: the fuzz target runs them too).
 */
#ifndef CALLSD_TWCC_STAMP_H
#define CALLSD_TWCC_STAMP_H

#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "pyslots.h"
#include "twcc_rules.h"

#define TWCC_HISTORY 4096 /* twcc_send.HISTORY */

/* ---- the sequencer's bookkeeping (TransportSequencer.stamp) ---------------------------------------------------- */

static PyObject *s_q_next_seq, *s_q_clock, *s_q_send_ms, *s_q_size, *s_q_seq, *s_q_reported, *s_q_cluster,
    *s_q_cluster_now, *s_q_cluster_last, *s_q_stamped, *s_q_unstampable, *s_q_sent_bytes, *s_q_ext_id;
static PyObject *twcc_sequencer_type; /* twcc_send.TransportSequencer, registered by native/__init__.py */
static PyObject *twcc_monotonic;      /* time.monotonic: read as CLOCK_MONOTONIC without a call */

static int twcc_intern(void) {
#define TWCC_INTERN(var, text)                                                                                  \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return -1;
    TWCC_INTERN(s_q_next_seq, "next_seq") TWCC_INTERN(s_q_clock, "_clock") TWCC_INTERN(s_q_send_ms, "_send_ms")
    TWCC_INTERN(s_q_size, "_size") TWCC_INTERN(s_q_seq, "_seq") TWCC_INTERN(s_q_reported, "_reported")
    TWCC_INTERN(s_q_cluster, "_cluster") TWCC_INTERN(s_q_cluster_now, "cluster")
    TWCC_INTERN(s_q_cluster_last, "cluster_last") TWCC_INTERN(s_q_stamped, "stamped")
    TWCC_INTERN(s_q_unstampable, "unstampable") TWCC_INTERN(s_q_sent_bytes, "sent_bytes")
    TWCC_INTERN(s_q_ext_id, "ext_id")
#undef TWCC_INTERN
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return -1;
    twcc_monotonic = PyObject_GetAttrString(time_module, "monotonic");
    Py_DECREF(time_module);
    return twcc_monotonic == NULL ? -1 : 0;
}

/* True when `twcc` is a TransportSequencer this file may stamp for (a subclass could override `stamp`). */
static int twcc_is_sequencer(PyObject *twcc) {
    return twcc_sequencer_type != NULL && (PyObject *)Py_TYPE(twcc) == twcc_sequencer_type;
}

/* history[slot] = value, for one of the sequencer's arrays (`itemsize` 8: double or long; 1: bytearray). */
static int twcc_store(PyObject *seq_obj, PyObject *name, Py_ssize_t slot, double dvalue, long lvalue, char kind) {
    PyObject *arr = cs_getattr(seq_obj, name);
    if (arr == NULL)
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(arr, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        Py_DECREF(arr);
        return -1;
    }
    int rc = 0;
    Py_ssize_t item = kind == 'd' ? (Py_ssize_t)sizeof(double) : kind == 'l' ? (Py_ssize_t)sizeof(long) : 1;
    if (view.itemsize != item || view.len < (slot + 1) * item) {
        PyErr_Format(PyExc_TypeError, "TransportSequencer.%U is not the history array it should be", name);
        rc = -1;
    } else if (kind == 'd') {
        ((double *)view.buf)[slot] = dvalue;
    } else if (kind == 'l') {
        ((long *)view.buf)[slot] = lvalue;
    } else {
        ((uint8_t *)view.buf)[slot] = (uint8_t)lvalue;
    }
    PyBuffer_Release(&view);
    Py_DECREF(arr);
    return rc;
}

/* The sequencer's clock in ms: CLOCK_MONOTONIC when it is time.monotonic (the same clock), else a call. */
static int twcc_now_ms(PyObject *seq_obj, double *ms) {
    PyObject *clock = cs_getattr(seq_obj, s_q_clock);
    if (clock == NULL)
        return -1;
    if (clock == twcc_monotonic) {
        Py_DECREF(clock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        *ms = ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9) * 1000.0;
        return 0;
    }
    PyObject *now = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (now == NULL)
        return -1;
    double seconds = PyFloat_AsDouble(now);
    Py_DECREF(now);
    if (seconds == -1.0 && PyErr_Occurred())
        return -1;
    *ms = seconds * 1000.0;
    return 0;
}

/* TransportSequencer.stamp on `packet` (n bytes) into `out` (room for n + 8): the new length; n with `out` a copy
 * when the packet cannot be stamped (counted, like the Python method); -1 with an exception set. */
static long twcc_stamp_sequencer(PyObject *q, const uint8_t *packet, size_t n, uint8_t *out) {
    long long ext_id, seq;
    if (get_ll(q, s_q_ext_id, &ext_id) < 0 || get_ll(q, s_q_next_seq, &seq) < 0)
        return -1;
    long len = twcc_stamp_rules(packet, n, out, (int)(ext_id > 255 || ext_id < 0 ? 0 : ext_id), (unsigned)seq);
    if (len < 0) {
        memcpy(out, packet, n);
        return add_ll(q, s_q_unstampable, 1) < 0 ? -1 : (long)n;
    }
    double ms;
    long long cluster;
    if (twcc_now_ms(q, &ms) < 0 || get_ll(q, s_q_cluster_now, &cluster) < 0)
        return -1;
    int last = get_truth(q, s_q_cluster_last);
    if (last < 0)
        return -1;
    Py_ssize_t slot = (Py_ssize_t)(seq & (TWCC_HISTORY - 1));
    if (twcc_store(q, s_q_send_ms, slot, ms, 0, 'd') < 0 || twcc_store(q, s_q_size, slot, 0, len, 'l') < 0 ||
        twcc_store(q, s_q_seq, slot, 0, (long)seq, 'l') < 0 || twcc_store(q, s_q_reported, slot, 0, 0, 'b') < 0 ||
        twcc_store(q, s_q_cluster, slot, 0, (long)(last ? -cluster : cluster), 'l') < 0)
        return -1;
    if (set_ll(q, s_q_next_seq, (seq + 1) & 0xFFFF) < 0 || add_ll(q, s_q_stamped, 1) < 0 ||
        add_ll(q, s_q_sent_bytes, len) < 0)
        return -1;
    return len;
}

/* _engine.set_sequencer_type(cls | None): the class whose instances the step stamps itself (None: none). */
static PyObject *twcc_set_sequencer_type(PyObject *module, PyObject *cls) {
    (void)module;
    if (cls == Py_None) { /* every stamper through its `stamp` method (the A/B of bench/forward_step.py) */
        Py_CLEAR(twcc_sequencer_type);
        Py_RETURN_NONE;
    }
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "set_sequencer_type needs a class or None");
        return NULL;
    }
    Py_XSETREF(twcc_sequencer_type, Py_NewRef(cls));
    Py_RETURN_NONE;
}

/* _engine.stamp_transport_seq(packet, ext_id, seq) -> bytes | None: the rules alone, for the differential test. */
static PyObject *twcc_stamp_function(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer packet;
    int ext_id;
    unsigned int seq;
    if (!PyArg_ParseTuple(args, "y*iI", &packet, &ext_id, &seq))
        return NULL;
    uint8_t *out = PyMem_Malloc((size_t)packet.len + 8);
    if (out == NULL) {
        PyBuffer_Release(&packet);
        return PyErr_NoMemory();
    }
    long len = twcc_stamp_rules(packet.buf, (size_t)packet.len, out, ext_id, seq & 0xFFFF);
    PyBuffer_Release(&packet);
    PyObject *r = len < 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)out, len);
    PyMem_Free(out);
    return r;
}

#endif
