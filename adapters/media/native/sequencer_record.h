/* SequencerRecord: a transport-wide sequencer's counter and send history (twcc_send.TransportSequencer's base) as
 * C fields and one C array of slot records. Included once, by twcc_step.h, after engine_state.h (the clock).
 *
 * Why: the native step stamps every packet to a receiver that negotiated transport-cc. With the sequencer's state in
 * a Python object, each stamp read ~ten slots and the int behind each, took five history buffers through the buffer
 * protocol (a format check each) and wrote one item into each of five arrays: five more cold lines per egress packet
 * at capacity, where the step is memory-bound (docs/adr/0033), and three new ints per stamp. Here the numbers are C
 * fields and one packet's history (send time, size, number, cluster, reported) is one 20-byte record, so a stamp
 * touches the sequencer and one slot.
 *
 * The same object serves the Python path: `stamp`, `_grow` and `_take` are methods of this type (what
 * twcc_send.SequencerTwin does in Python), and the history reads as the twin's arrays (`_send_ms`, `_size`, `_seq`,
 * `_reported`, `_cluster`, built on each read: tests and diagnostics only). twcc_send.py picks this type when the
 * extension imports and the twin when it does not; tests/media/test_route_record.py runs the Python path on both
 * and requires identical outcomes, the differential tests compare both paths on this one. */
#ifndef CALLSD_SEQUENCER_RECORD_H
#define CALLSD_SEQUENCER_RECORD_H

#include "send_epoch.h"

/* twcc_send.HISTORY, FIRST and COVER_MS (tests/media/test_native_video_diff.py holds them equal): the ring starts
 * at FIRST slots and doubles when it would overwrite a packet sent less than COVER_MS ago, up to HISTORY slots. */
#define TWCC_HISTORY 4096
#define TWCC_FIRST 256
#define TWCC_COVER_MS 2000.0

typedef struct __attribute__((packed, aligned(4))) { /* 20 bytes: 256 slots are 5 KiB per receiver */
    double send_ms;   /* on the sequencer's clock */
    int32_t seq;      /* the 16-bit number this slot holds, -1: none */
    int32_t cluster;  /* the probe cluster (0: none), negative: the cluster's last packet */
    uint16_t size;    /* the stamped packet's length */
    uint8_t reported; /* a feedback already reported it */
} sent_slot;

typedef struct {
    PyObject_HEAD
    long long next_seq, stamped, unstampable, sent_bytes;
    long long ext_id;  /* the id the receiver accepted */
    long long cluster; /* the probe cluster being sent (probing.py sets it around its padding), 0: none */
    char cluster_last; /* the next stamped packet is its cluster's last */
    Py_ssize_t mask;   /* the ring's length - 1 */
    sent_slot *ring;
    PyObject *clock;
} SequencerRecord;

static PyTypeObject SequencerRecordType;

static sent_slot *ring_new(Py_ssize_t slots) {
    sent_slot *ring = PyMem_Calloc((size_t)slots, sizeof *ring);
    if (ring == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < slots; i++)
        ring[i].seq = -1;
    return ring;
}

static int SequencerRecord_init(SequencerRecord *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ext_id", "clock", NULL};
    long long ext_id;
    PyObject *clock;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LO", kwlist, &ext_id, &clock))
        return -1;
    sent_slot *ring = ring_new(TWCC_FIRST);
    if (ring == NULL)
        return -1;
    PyMem_Free(self->ring);
    self->ring = ring;
    self->mask = TWCC_FIRST - 1;
    self->ext_id = ext_id;
    self->next_seq = self->stamped = self->unstampable = self->sent_bytes = self->cluster = 0;
    self->cluster_last = 0;
    Py_XSETREF(self->clock, Py_NewRef(clock));
    return 0;
}

static int SequencerRecord_traverse(SequencerRecord *self, visitproc visit, void *arg) {
    Py_VISIT(self->clock); /* the subclass's traverse (subtype_traverse) visits the heap type */
    return 0;
}

static int SequencerRecord_clear(SequencerRecord *self) {
    Py_CLEAR(self->clock);
    return 0;
}

/* Also the base of the Python subclass's dealloc (subtype_dealloc), which releases the heap type itself. */
static void SequencerRecord_dealloc(SequencerRecord *self) {
    send_state_epoch++; /* a route may hold it, borrowed, as its receiver's sequencer (send_state.h) */
    PyObject_GC_UnTrack(self);
    SequencerRecord_clear(self);
    PyMem_Free(self->ring);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* 0, or -1 with an exception set when the object was never initialised (its ring is not allocated). */
static int sequencer_ready(const SequencerRecord *q) {
    if (q->ring != NULL)
        return 0;
    PyErr_SetString(PyExc_ValueError, "the sequencer was not initialised (TransportSequencer.__init__)");
    return -1;
}

/* SequencerTwin._grow: double the ring, each packet it holds moving to its slot in the larger one. */
static int sequencer_grow(SequencerRecord *q) {
    if (sequencer_ready(q) < 0)
        return -1;
    Py_ssize_t slots = 2 * (q->mask + 1);
    sent_slot *ring = ring_new(slots);
    if (ring == NULL)
        return -1;
    for (Py_ssize_t i = 0; i <= q->mask; i++)
        if (q->ring[i].seq >= 0)
            ring[q->ring[i].seq & (slots - 1)] = q->ring[i];
    PyMem_Free(q->ring);
    q->ring = ring;
    q->mask = slots - 1;
    return 0;
}

/* SequencerTwin.stamp's state change for a packet stamped with number `q->next_seq` (`size` bytes, sent at
 * `send_ms`): the history slot, the next number and the counters. 0, or -1 with an exception set. */
static int sequencer_record(SequencerRecord *q, double send_ms, size_t size) {
    long long next = q->next_seq;
    sent_slot *slot = &q->ring[next & q->mask];
    if (slot->seq >= 0 && send_ms - slot->send_ms < TWCC_COVER_MS && q->mask < TWCC_HISTORY - 1) {
        if (sequencer_grow(q) < 0) /* rare: the ring doubles */
            return -1;
        slot = &q->ring[next & q->mask];
    }
    slot->send_ms = send_ms;
    slot->size = (uint16_t)size;
    slot->seq = (int32_t)next;
    slot->reported = 0;
    slot->cluster = (int32_t)(q->cluster_last ? -q->cluster : q->cluster);
    q->next_seq = (next + 1) & 0xFFFF;
    q->stamped++;
    q->sent_bytes += (long long)size;
    return 0;
}

/* Stamp `in` into `buf` (capacity `cap`): 1 and `*n` when stamped and recorded, 0 when the packet cannot carry the
 * number (counted), -1 with an exception set. */
static int sequencer_stamp_into(SequencerRecord *q, uint8_t *buf, size_t cap, const uint8_t *in, size_t len,
                                size_t *n) {
    if (sequencer_ready(q) < 0)
        return -1;
    long long ext_id = q->ext_id;
    *n = ext_id >= 1 && ext_id <= 255 && q->next_seq >= 0 && q->next_seq <= 0xFFFF
             ? cs_stamp_transport_seq(buf, cap, in, len, (int)ext_id, (int)q->next_seq)
             : 0;
    if (*n == 0) {
        q->unstampable++;
        return 0;
    }
    if (q->clock == NULL) {
        PyErr_SetString(PyExc_AttributeError, "the sequencer has no _clock");
        return -1;
    }
    double now;
    if (clock_now(q->clock, &now) < 0 || sequencer_record(q, now * 1000.0, *n) < 0)
        return -1;
    return 1;
}

static PyObject *SequencerRecord_stamp(SequencerRecord *self, PyObject *arg) {
    Py_buffer plain;
    if (PyObject_GetBuffer(arg, &plain, PyBUF_SIMPLE) < 0)
        return NULL;
    size_t cap = (size_t)plain.len + 16, n;
    uint8_t *buf = PyMem_Malloc(cap);
    if (buf == NULL) {
        PyBuffer_Release(&plain);
        return PyErr_NoMemory();
    }
    int rc = sequencer_stamp_into(self, buf, cap, plain.buf, (size_t)plain.len, &n);
    PyBuffer_Release(&plain);
    PyObject *out = rc < 0 ? NULL : rc == 0 ? Py_NewRef(arg) : PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)n);
    PyMem_Free(buf);
    return out;
}

static PyObject *SequencerRecord_grow(SequencerRecord *self, PyObject *Py_UNUSED(ignored)) {
    return sequencer_grow(self) < 0 ? NULL : Py_NewRef(Py_None);
}

/* SequencerTwin._take(base_seq, count): [(index, send_ms, size, cluster)] for the numbers base_seq.. this sequencer
 * sent and has not reported, each marked reported. */
static PyObject *SequencerRecord_take(SequencerRecord *self, PyObject *args) {
    long long base_seq;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "Ln", &base_seq, &count) || sequencer_ready(self) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < count; i++) {
        long long seq = (base_seq + i) & 0xFFFF;
        sent_slot *slot = &self->ring[seq & self->mask];
        if (slot->seq != seq || slot->reported)
            continue;
        slot->reported = 1;
        PyObject *item = Py_BuildValue("(ndHi)", i, slot->send_ms, slot->size, slot->cluster);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    return out;
}

/* One history field as the twin's array, built from the ring (a copy: tests and diagnostics). */
enum { F_SEND_MS, F_SIZE, F_SEQ, F_REPORTED, F_CLUSTER };

static PyObject *history_array(SequencerRecord *self, int field) {
    static const char *const typecodes[] = {"d", "H", "i", NULL, "i"}; /* F_REPORTED: a bytearray */
    if (sequencer_ready(self) < 0)
        return NULL;
    Py_ssize_t slots = self->mask + 1;
    PyObject *list = PyList_New(slots);
    for (Py_ssize_t i = 0; list != NULL && i < slots; i++) {
        const sent_slot *s = &self->ring[i];
        PyObject *v = field == F_SEND_MS    ? PyFloat_FromDouble(s->send_ms)
                      : field == F_SIZE     ? PyLong_FromLong(s->size)
                      : field == F_SEQ      ? PyLong_FromLong(s->seq)
                      : field == F_REPORTED ? PyLong_FromLong(s->reported)
                                            : PyLong_FromLong(s->cluster);
        if (v == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, v);
    }
    if (list == NULL)
        return NULL;
    PyObject *out = NULL;
    if (field == F_REPORTED) {
        out = PyByteArray_FromObject(list);
    } else {
        PyObject *array = PyImport_ImportModule("array");
        out = array == NULL ? NULL : PyObject_CallMethod(array, "array", "sO", typecodes[field], list);
        Py_XDECREF(array);
    }
    Py_DECREF(list);
    return out;
}

static PyObject *SequencerRecord_send_ms(SequencerRecord *self, void *c) { (void)c; return history_array(self, F_SEND_MS); }
static PyObject *SequencerRecord_size(SequencerRecord *self, void *c) { (void)c; return history_array(self, F_SIZE); }
static PyObject *SequencerRecord_seq(SequencerRecord *self, void *c) { (void)c; return history_array(self, F_SEQ); }
static PyObject *SequencerRecord_reported(SequencerRecord *self, void *c) { (void)c; return history_array(self, F_REPORTED); }
static PyObject *SequencerRecord_cluster(SequencerRecord *self, void *c) { (void)c; return history_array(self, F_CLUSTER); }

static PyObject *SequencerRecord_get_mask(SequencerRecord *self, void *c) {
    (void)c;
    return PyLong_FromSsize_t(self->mask);
}

static PyGetSetDef SequencerRecord_getset[] = {
    {"_send_ms", (getter)SequencerRecord_send_ms, NULL, "send times (ms), by slot (a copy)", NULL},
    {"_size", (getter)SequencerRecord_size, NULL, "stamped sizes, by slot (a copy)", NULL},
    {"_seq", (getter)SequencerRecord_seq, NULL, "the number each slot holds, -1: none (a copy)", NULL},
    {"_reported", (getter)SequencerRecord_reported, NULL, "1 where a feedback reported the slot (a copy)", NULL},
    {"_cluster", (getter)SequencerRecord_cluster, NULL, "probe clusters, negative: a cluster's last (a copy)", NULL},
    {"_mask", (getter)SequencerRecord_get_mask, NULL, "the ring's length - 1", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef SequencerRecord_members[] = {
    {"ext_id", T_LONGLONG, offsetof(SequencerRecord, ext_id), 0, "the extension id the receiver accepted"},
    {"next_seq", T_LONGLONG, offsetof(SequencerRecord, next_seq), 0, "the next transport-wide sequence number"},
    {"stamped", T_LONGLONG, offsetof(SequencerRecord, stamped), 0, "packets stamped"},
    {"unstampable", T_LONGLONG, offsetof(SequencerRecord, unstampable), 0, "packets that could not carry it"},
    {"sent_bytes", T_LONGLONG, offsetof(SequencerRecord, sent_bytes), 0, "every stamped byte"},
    {"cluster", T_LONGLONG, offsetof(SequencerRecord, cluster), 0, "the probe cluster being sent, 0: none"},
    {"cluster_last", T_BOOL, offsetof(SequencerRecord, cluster_last), 0, "the next stamp is its cluster's last"},
    {"_clock", T_OBJECT_EX, offsetof(SequencerRecord, clock), 0, "the send times' clock (seconds)"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef SequencerRecord_methods[] = {
    {"stamp", (PyCFunction)SequencerRecord_stamp, METH_O,
     "stamp(plain) -> bytes: with the next transport sequence number, recorded; unchanged (counted) if it cannot "
     "carry one."},
    {"_grow", (PyCFunction)SequencerRecord_grow, METH_NOARGS, "double the ring"},
    {"_take", (PyCFunction)SequencerRecord_take, METH_VARARGS,
     "_take(base_seq, count) -> [(index, send_ms, size, cluster)]: unreported packets sent, now marked reported"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SequencerRecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.SequencerRecord",
    .tp_basicsize = sizeof(SequencerRecord),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "SequencerRecord(ext_id, clock): a transport-wide sequencer's numbers and send history in C "
              "(twcc_send.TransportSequencer's base; sequencer_record.h).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SequencerRecord_init,
    .tp_dealloc = (destructor)SequencerRecord_dealloc,
    .tp_traverse = (traverseproc)SequencerRecord_traverse,
    .tp_clear = (inquiry)SequencerRecord_clear,
    .tp_methods = SequencerRecord_methods,
    .tp_members = SequencerRecord_members,
    .tp_getset = SequencerRecord_getset,
};

#endif
