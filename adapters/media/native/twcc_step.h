/* TransportSequencer.stamp in the native step, on the sequencer's C record (twcc_stamp.h, sequencer_record.h have
 * the why). Included once, by _engine.c, after engine_state.h. */
#ifndef CALLSD_TWCC_STEP_H
#define CALLSD_TWCC_STEP_H

#include "twcc_stamp.h"

#include "sequencer_record.h"

/* The stamp of a packet to a peer whose sequencer is a SequencerRecord (sequencer_record.h): on success `*out`/`*len`
 * name the stamped copy in `buf` (capacity BUF), or stay as they were when the packet cannot carry the number
 * (counted). 0, or -1 with an exception set. */
static int sequencer_stamp(SequencerRecord *seq, uint8_t *buf, const uint8_t **out, size_t *len) {
    size_t n;
    int rc = sequencer_stamp_into(seq, buf, BUF, *out, *len, &n);
    if (rc > 0) {
        *out = buf;
        *len = n;
    }
    return rc < 0 ? -1 : 0;
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
