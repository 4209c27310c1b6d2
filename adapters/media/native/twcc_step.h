/* TransportSequencer.stamp in the native step, on the sequencer object itself (twcc_stamp.h has the why). Included
 * once, by _engine.c, after pyslots.h. */
#ifndef CALLSD_TWCC_STEP_H
#define CALLSD_TWCC_STEP_H

#include "twcc_stamp.h"

/* twcc_send.HISTORY and COVER_MS (tests/media/test_native_video_diff.py holds them equal): the ring doubles when it
 * would overwrite a packet sent less than COVER_MS ago, up to HISTORY slots. */
#define TWCC_HISTORY 4096
#define TWCC_COVER_MS 2000.0

static PyObject *s_next_seq, *s_send_ms, *s_size, *s_seq_hist, *s_reported, *s_cluster, *s_cluster_last,
    *s_cluster_now, *s_stamped, *s_unstampable, *s_sent_bytes, *s_grow, *s_mask;

static int twcc_intern(void) {
    struct {
        PyObject **var;
        const char *text;
    } names[] = {
        {&s_next_seq, "next_seq"}, {&s_send_ms, "_send_ms"}, {&s_size, "_size"}, {&s_seq_hist, "_seq"},
        {&s_reported, "_reported"}, {&s_cluster, "_cluster"}, {&s_cluster_last, "cluster_last"},
        {&s_cluster_now, "cluster"},
        {&s_stamped, "stamped"}, {&s_unstampable, "unstampable"}, {&s_sent_bytes, "sent_bytes"},
        {&s_grow, "_grow"}, {&s_mask, "_mask"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].var = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    return 0;
}

/* Copy item `slot` of the buffer attribute `name` (item type `format`, `size` bytes) from `value` (`put`) or into it. */
static int history_item(PyObject *seq, PyObject *name, Py_ssize_t slot, const char *format, void *value,
                        Py_ssize_t size, int put) {
    PyObject *obj = cs_getattr(seq, name);
    if (obj == NULL)
        return -1;
    Py_buffer view;
    int rc = PyObject_GetBuffer(obj, &view, put ? PyBUF_WRITABLE | PyBUF_FORMAT : PyBUF_FORMAT);
    Py_DECREF(obj);
    if (rc < 0)
        return -1;
    const char *got = view.format != NULL ? view.format : "B";
    if (view.itemsize != size || strcmp(got, format) != 0 || slot < 0 || slot >= view.len / size) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_TypeError, "TransportSequencer.%U must be a buffer of '%s' covering its history", name,
                     format);
        return -1;
    }
    if (put)
        memcpy((char *)view.buf + slot * size, value, (size_t)size);
    else
        memcpy(value, (char *)view.buf + slot * size, (size_t)size);
    PyBuffer_Release(&view);
    return 0;
}

static int history_put(PyObject *seq, PyObject *name, Py_ssize_t slot, const char *format, const void *value,
                       Py_ssize_t size) {
    return history_item(seq, name, slot, format, (void *)value, size, 1);
}

/* TransportSequencer.stamp on `seq` for the packet `*out` (`*len` bytes): on success `*out`/`*len` name the stamped
 * copy in `buf` (capacity BUF), or stay as they were when the packet cannot carry the number (counted). 0, or -1
 * with an exception set. */
static int sequencer_stamp(PyObject *seq, uint8_t *buf, const uint8_t **out, size_t *len) {
    long long ext_id, next, mask;
    if (get_ll(seq, s_ext_id, &ext_id) < 0 || get_ll(seq, s_next_seq, &next) < 0)
        return -1;
    size_t n = ext_id >= 1 && ext_id <= 255 ? cs_stamp_transport_seq(buf, BUF, *out, *len, (int)ext_id, (int)next)
                                            : 0;
    if (n == 0)
        return add_ll(seq, s_unstampable, 1);
    PyObject *now_o = PyObject_CallMethodNoArgs(seq, s_clock);
    if (now_o == NULL)
        return -1;
    double send_ms = PyFloat_AsDouble(now_o) * 1000.0;
    Py_DECREF(now_o);
    if (send_ms == -1000.0 && PyErr_Occurred())
        return -1;
    if (get_ll(seq, s_mask, &mask) < 0)  /* the ring's length - 1, as stamp reads it (history_item checks bounds) */
        return -1;
    Py_ssize_t slot = (Py_ssize_t)(next & mask);
    int32_t held;
    double held_ms;
    if (history_item(seq, s_seq_hist, slot, "i", &held, sizeof held, 0) < 0 ||
        history_item(seq, s_send_ms, slot, "d", &held_ms, sizeof held_ms, 0) < 0)
        return -1;
    if (held >= 0 && send_ms - held_ms < TWCC_COVER_MS && mask < TWCC_HISTORY - 1) {  /* rare: the ring doubles */
        PyObject *r = PyObject_CallMethodNoArgs(seq, s_grow);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        if (get_ll(seq, s_mask, &mask) < 0)
            return -1;
        slot = (Py_ssize_t)(next & mask);
    }
    long long cluster;
    int last = get_truth(seq, s_cluster_last);
    if (last < 0 || get_ll(seq, s_cluster_now, &cluster) < 0)
        return -1;
    uint16_t size_v = (uint16_t)n;
    int32_t seq_v = (int32_t)next, cluster_v = (int32_t)(last ? -cluster : cluster);
    unsigned char zero = 0;
    if (history_put(seq, s_send_ms, slot, "d", &send_ms, sizeof send_ms) < 0 ||
        history_put(seq, s_size, slot, "H", &size_v, sizeof size_v) < 0 ||
        history_put(seq, s_seq_hist, slot, "i", &seq_v, sizeof seq_v) < 0 ||
        history_put(seq, s_reported, slot, "B", &zero, 1) < 0 ||
        history_put(seq, s_cluster, slot, "i", &cluster_v, sizeof cluster_v) < 0)
        return -1;
    if (set_ll(seq, s_next_seq, (next + 1) & 0xFFFF) < 0 || add_ll(seq, s_stamped, 1) < 0 ||
        add_ll(seq, s_sent_bytes, (long long)n) < 0)
        return -1;
    *out = buf;
    *len = n;
    return 0;
}

/* core.wire.transport_seq.stamp_transport_seq in C, for tests/media/test_native_twcc.py: the step's rules on any
 * packet (None where the step would count the packet unstampable). */
static PyObject *twcc_stamp_function(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer packet;
    int ext_id;
    unsigned int seq;
    if (!PyArg_ParseTuple(args, "y*iI", &packet, &ext_id, &seq))
        return NULL;
    size_t cap = (size_t)packet.len + 16;
    uint8_t *out = PyMem_Malloc(cap);
    if (out == NULL) {
        PyBuffer_Release(&packet);
        return PyErr_NoMemory();
    }
    size_t n = ext_id >= 1 && ext_id <= 255
                   ? cs_stamp_transport_seq(out, cap, packet.buf, (size_t)packet.len, ext_id, (int)(seq & 0xFFFF))
                   : 0;
    PyBuffer_Release(&packet);
    PyObject *r = n == 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)n);
    PyMem_Free(out);
    return r;
}

#endif
