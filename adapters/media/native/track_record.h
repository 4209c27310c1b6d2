/* TrackRecord: the per-packet reception state of one published track (forwarder.InTrack) as C fields inside the
 * track object, like a route's (route_record.h, which has the why). Included once, by _engine.c, after
 * route_record.h.
 *
 * Every ingress packet updated ten of InTrack's slots (counts, RFC 3550 A.1 sequence state, last timestamp and
 * arrival, voice activity), each a new int or float object; now they are fields the step writes in place, and
 * Python reads and writes them through member descriptors (adapters/media/track_record.py has the pure-Python twin
 * used where the extension is not built; tests/media/test_route_record.py holds the two equal). */
#ifndef CALLSD_TRACK_RECORD_H
#define CALLSD_TRACK_RECORD_H

typedef struct {
    PyObject_HEAD
    long long packets, octets;           /* RTP packets and bytes received on the track */
    long long base_seq, max_seq, cycles; /* RFC 3550 A.1 */
    long long last_ts;                   /* the last packet's RTP timestamp */
    double last_rx;                      /* when it arrived, on the forwarder's clock */
    long long vad_score;                 /* debounced voice activity (forward_step.h vad) */
    long long level_id;                  /* the publisher's audio-level extension id, 0: none */
    char started, speaking;
} TrackRecord;

static PyMemberDef TrackRecord_members[] = {
    {"packets", T_LONGLONG, offsetof(TrackRecord, packets), 0, "RTP packets received"},
    {"octets", T_LONGLONG, offsetof(TrackRecord, octets), 0, "RTP bytes received"},
    {"base_seq", T_LONGLONG, offsetof(TrackRecord, base_seq), 0, "the first sequence number (RFC 3550 A.1)"},
    {"max_seq", T_LONGLONG, offsetof(TrackRecord, max_seq), 0, "the highest sequence number (RFC 3550 A.1)"},
    {"cycles", T_LONGLONG, offsetof(TrackRecord, cycles), 0, "sequence number wraps, shifted (RFC 3550 A.1)"},
    {"last_ts", T_LONGLONG, offsetof(TrackRecord, last_ts), 0, "the last packet's RTP timestamp"},
    {"last_rx", T_DOUBLE, offsetof(TrackRecord, last_rx), 0, "when the last packet arrived (forwarder clock)"},
    {"vad_score", T_LONGLONG, offsetof(TrackRecord, vad_score), 0, "debounced voice activity score"},
    {"level_id", T_LONGLONG, offsetof(TrackRecord, level_id), 0, "the audio-level extension id, 0: none"},
    {"started", T_BOOL, offsetof(TrackRecord, started), 0, "a packet was received"},
    {"speaking", T_BOOL, offsetof(TrackRecord, speaking), 0, "voice activity says the publisher speaks"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject TrackRecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.TrackRecord",
    .tp_basicsize = sizeof(TrackRecord),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The per-packet reception state of one published track, as C fields the native step writes in "
              "place (forwarder.InTrack's base; track_record.h).",
    .tp_new = PyType_GenericNew,
    .tp_members = TrackRecord_members,
};

/* `track` as its record, or NULL with TypeError. */
static inline TrackRecord *track_record(PyObject *track) {
    if (Py_TYPE(track) == &TrackRecordType || Py_TYPE(track)->tp_base == &TrackRecordType ||
        PyType_IsSubtype(Py_TYPE(track), &TrackRecordType))
        return (TrackRecord *)track;
    PyErr_Format(PyExc_TypeError, "a track must be a TrackRecord (forwarder.InTrack), not %.100s",
                 Py_TYPE(track)->tp_name);
    return NULL;
}

#endif
