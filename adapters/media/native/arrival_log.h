/* ArrivalLog: the transport-wide sequence numbers a publisher's packets carried, and when they arrived, kept in C
 * by the native step and drained by Python once per feedback round (adapters/media/twcc_recv.py, docs/adr/0024).
 *
 * The C step appends one entry per numbered packet, with no Python call; `FeedbackSender.drain()` replays the
 * entries into its pure ArrivalRecorder before each report, in arrival order, as the Python path's per-packet
 * `arrived` would have. The step creates a sender's log on its first numbered packet (the attribute `log`, None
 * until then), so the Python path never needs the extension. When a log is full (a round with more than
 * ARRIVAL_LOG_SIZE packets from one publisher) the step asks Python to drain it first, so nothing is lost.
 */
#ifndef CALLSD_ARRIVAL_LOG_H
#define CALLSD_ARRIVAL_LOG_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define ARRIVAL_LOG_SIZE 2048

typedef struct {
    PyObject_HEAD
    int count;
    uint16_t seq[ARRIVAL_LOG_SIZE];
    uint32_t ssrc[ARRIVAL_LOG_SIZE];
    double at[ARRIVAL_LOG_SIZE];
} ArrivalLog;

static PyTypeObject ArrivalLogType;

/* Append one arrival: 1, or 0 when the log is full (drain it, then append again). */
static int arrival_log_add(ArrivalLog *log, int seq, uint32_t ssrc, double at) {
    if (log->count >= ARRIVAL_LOG_SIZE)
        return 0;
    log->seq[log->count] = (uint16_t)seq;
    log->ssrc[log->count] = ssrc;
    log->at[log->count] = at;
    log->count++;
    return 1;
}

static PyObject *ArrivalLog_drain(ArrivalLog *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(self->count);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < self->count; i++) {
        PyObject *row = Py_BuildValue("(ikd)", (int)self->seq[i], (unsigned long)self->ssrc[i], self->at[i]);
        if (row == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, row);
    }
    self->count = 0;
    return out;
}

static Py_ssize_t ArrivalLog_len(ArrivalLog *self) { return self->count; }

static PyMethodDef ArrivalLog_methods[] = {
    {"drain", (PyCFunction)ArrivalLog_drain, METH_NOARGS,
     "drain() -> [(transport seq, ssrc, monotonic seconds)]: the arrivals since the last drain, oldest first."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods ArrivalLog_as_sequence = {.sq_length = (lenfunc)ArrivalLog_len};

static PyTypeObject ArrivalLogType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.ArrivalLog",
    .tp_basicsize = sizeof(ArrivalLog),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ArrivalLog(): a publisher's transport-cc arrivals, appended by the native step, drained by Python.",
    .tp_new = PyType_GenericNew,
    .tp_methods = ArrivalLog_methods,
    .tp_as_sequence = &ArrivalLog_as_sequence,
};

#endif
