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

/* The sequencer's five history buffers, each taken once per stamp (writable, with its format checked). */
enum { H_SEND_MS, H_SIZE, H_SEQ, H_REPORTED, H_CLUSTER, H_COUNT };
static const struct {
    PyObject **name;
    const char *format;
    Py_ssize_t size;
} history_fields[H_COUNT] = {
    {&s_send_ms, "d", 8}, {&s_size, "H", 2}, {&s_seq_hist, "i", 4}, {&s_reported, "B", 1}, {&s_cluster, "i", 4},
};

static void history_release(Py_buffer *views, int taken) {
    for (int i = 0; i < taken; i++)
        PyBuffer_Release(&views[i]);
}

/* Take every history buffer of `seq`, each covering `slot`: 0, or -1 with an exception set (none held). */
static int history_take(PyObject *seq, Py_ssize_t slot, Py_buffer *views) {
    for (int i = 0; i < H_COUNT; i++) {
        PyObject *name = *history_fields[i].name;
        PyObject *obj = cs_getattr(seq, name);
        int rc = obj == NULL ? -1 : PyObject_GetBuffer(obj, &views[i], PyBUF_WRITABLE | PyBUF_FORMAT);
        Py_XDECREF(obj);
        if (rc < 0) {
            history_release(views, i);
            return -1;
        }
        const char *got = views[i].format != NULL ? views[i].format : "B";
        Py_ssize_t size = history_fields[i].size;
        if (views[i].itemsize != size || strcmp(got, history_fields[i].format) != 0 || slot < 0 ||
            slot >= views[i].len / size) {
            history_release(views, i + 1);
            PyErr_Format(PyExc_TypeError, "TransportSequencer.%U must be a buffer of '%s' covering its history", name,
                         history_fields[i].format);
            return -1;
        }
    }
    return 0;
}

#define HISTORY_AT(views, field, slot) ((char *)(views)[field].buf + (slot) * history_fields[field].size)

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
    double send_ms;
    if (clock_seconds(seq, &send_ms) < 0)
        return -1;
    send_ms *= 1000.0;
    if (get_ll(seq, s_mask, &mask) < 0)  /* the ring's length - 1, as stamp reads it (history_take checks bounds) */
        return -1;
    long long cluster;
    int last = get_truth(seq, s_cluster_last);
    if (last < 0 || get_ll(seq, s_cluster_now, &cluster) < 0)
        return -1;
    Py_ssize_t slot = (Py_ssize_t)(next & mask);
    Py_buffer views[H_COUNT]; /* held only while no Python code runs */
    if (history_take(seq, slot, views) < 0)
        return -1;
    int32_t held;
    double held_ms;
    memcpy(&held, HISTORY_AT(views, H_SEQ, slot), sizeof held);
    memcpy(&held_ms, HISTORY_AT(views, H_SEND_MS, slot), sizeof held_ms);
    if (held >= 0 && send_ms - held_ms < TWCC_COVER_MS && mask < TWCC_HISTORY - 1) {  /* rare: the ring doubles */
        history_release(views, H_COUNT); /* _grow replaces the buffers */
        PyObject *r = PyObject_CallMethodNoArgs(seq, s_grow);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        if (get_ll(seq, s_mask, &mask) < 0)
            return -1;
        slot = (Py_ssize_t)(next & mask);
        if (history_take(seq, slot, views) < 0)
            return -1;
    }
    uint16_t size_v = (uint16_t)n;
    int32_t seq_v = (int32_t)next, cluster_v = (int32_t)(last ? -cluster : cluster);
    memcpy(HISTORY_AT(views, H_SEND_MS, slot), &send_ms, sizeof send_ms);
    memcpy(HISTORY_AT(views, H_SIZE, slot), &size_v, sizeof size_v);
    memcpy(HISTORY_AT(views, H_SEQ, slot), &seq_v, sizeof seq_v);
    *(uint8_t *)HISTORY_AT(views, H_REPORTED, slot) = 0;
    memcpy(HISTORY_AT(views, H_CLUSTER, slot), &cluster_v, sizeof cluster_v);
    history_release(views, H_COUNT);
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
