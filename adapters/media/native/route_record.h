/* RouteRecord: the per-packet state of one route (forwarder.OutRoute) as C fields inside the route object itself.
 * Included once, by _engine.c, after pyslots.h. docs/adr/0033 (addendum) has the measurements.
 *
 * Why: at capacity the step is memory-bound (docs/adr/0033). With these fields as slots of a Python class, each
 * forwarded copy read seven slot pointers and then the int object behind each (seven more dependent loads, each a
 * likely miss since the call's last packet was ~800 sessions ago), and every update allocated a new int and freed
 * the old one. As C fields of the route's own base class they sit right after the object header, in the line the
 * step touches anyway to check the route's type: the rewrite and the counters cost no load beyond the route, and
 * no allocation.
 *
 * OutRoute subclasses RouteRecord (adapters/media/route_record.py picks this type when the extension imports, its
 * pure-Python twin RouteRecordTwin when it does not), so Python reads and writes the same fields through member
 * descriptors, as it read the slots: the Python path, RTCP reports, NACK answers and the plane see exactly what the
 * step leaves, with nothing to copy back. The numbers are 64-bit (OverflowError beyond; Python masks them to 16 or
 * 32 bits anyway) and `resync` a bool (TypeError for anything else): tests/media/test_route_record.py. */
#ifndef CALLSD_ROUTE_RECORD_H
#define CALLSD_ROUTE_RECORD_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "send_epoch.h"

/* The receiver's send state as the step last read it through route -> receiver -> peer (send_state.h), so that a
 * forwarded copy touches the route and what it sends with, not the receiver and peer objects and the address tuple:
 * valid while `epoch` equals send_state_epoch, C data the Python side never sees. */
typedef struct {
    uint64_t epoch; /* send_state_epoch when read; 0: never read, or not to be kept */
    int kind;       /* SEND_NO_PEER, SEND_NOT_READY or SEND_DIRECT (send_state.h) */
    socklen_t alen;
    PyObject *tx;   /* SEND_DIRECT: the peer's SrtpSession, borrowed (its dealloc moves the epoch) */
    PyObject *twcc; /* SEND_DIRECT: its SequencerRecord, borrowed likewise, or NULL when it stamps nothing */
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } addr; /* SEND_DIRECT: the peer's address, parsed */
} route_send;

static int send_state_setattro(PyObject *self, PyObject *name, PyObject *value); /* send_state.h */

/* A route's payload-type map (OutRoute.pt_map, publisher PT -> receiver PT: one entry per negotiated codec) as C
 * pairs, kept when it has at most this many entries, all ints 0-127: the step looks the packet's type up in the
 * route it already holds instead of a dict it would have to reach (route_pt_learn). */
#define ROUTE_PT_PAIRS 4

/* A route's extension remap (OutRoute.remap, an ExtensionRemap: `identity`, and `table`, 256 bytes) as the step
 * uses it, learnt when the attribute is written (route_remap_learn): identity, or the index of its table among the
 * distinct tables seen (remap_tables, copies the module owns and never frees; routes past REMAP_TABLES distinct
 * ones read the object per packet, as before). Why: each forwarded copy with an extension block read `remap`,
 * its `identity` and its `table` through the slot memo (~100 instructions per egress packet at 200 calls,
 * docs/performance.md "session 10"). ExtensionRemap objects are read-only once set on a route (set_mapping builds
 * or shares one; nothing writes their slots), as pt_map is. */
#define REMAP_TABLES 255
static uint8_t remap_tables[REMAP_TABLES][256];
static int remap_table_count;

enum { REMAP_UNKNOWN = 0, REMAP_IDENTITY = 1, REMAP_TABLE = 2 };

typedef struct {
    PyObject_HEAD
    long long packets;   /* RTP packets sent on the route (its sender reports) */
    long long octets;    /* their payload octets */
    long long ts_offset; /* added to the publisher's timestamp, mod 2^32 */
    long long ssrc;      /* the receiver's SSRC for this track (checked to fit 32 bits where it is written out) */
    long long seq_offset; /* added to the publisher's sequence number, mod 2^16 */
    long long last_seq;   /* the highest sequence number sent, in the receiver's numbering */
    char resync;         /* the next packet re-bases seq_offset on last_seq (a new or resumed stream) */
    char pt_known;       /* pt_from/pt_to hold the route's pt_map (route_pt_learn); 0: the step reads the dict */
    unsigned char pt_count;
    uint8_t pt_from[ROUTE_PT_PAIRS], pt_to[ROUTE_PT_PAIRS]; /* publisher payload type -> the receiver's */
    uint8_t remap_kind;  /* REMAP_UNKNOWN (the step reads `remap`), REMAP_IDENTITY or REMAP_TABLE */
    uint8_t remap_index; /* REMAP_TABLE: remap_tables[remap_index] */
    route_send send;     /* the receiver's send state, cached (a write to `receiver` moves the epoch) */
} RouteRecord;

static PyMemberDef RouteRecord_members[] = {
    {"packets", T_LONGLONG, offsetof(RouteRecord, packets), 0, "RTP packets sent on this route"},
    {"octets", T_LONGLONG, offsetof(RouteRecord, octets), 0, "payload octets sent on this route"},
    {"ts_offset", T_LONGLONG, offsetof(RouteRecord, ts_offset), 0, "added to the publisher's RTP timestamp"},
    {"ssrc", T_LONGLONG, offsetof(RouteRecord, ssrc), 0, "the SSRC the receiver knows this track by"},
    {"seq_offset", T_LONGLONG, offsetof(RouteRecord, seq_offset), 0, "added to the publisher's sequence number"},
    {"last_seq", T_LONGLONG, offsetof(RouteRecord, last_seq), 0, "highest sequence number sent, receiver's numbering"},
    {"resync", T_BOOL, offsetof(RouteRecord, resync), 0, "the next packet re-bases seq_offset on last_seq"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RouteRecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.RouteRecord",
    .tp_basicsize = sizeof(RouteRecord),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The per-packet state of one route, as C fields the native step reads and writes in place "
              "(forwarder.OutRoute's base; route_record.h).",
    .tp_new = PyType_GenericNew,
    .tp_setattro = send_state_setattro,
    .tp_members = RouteRecord_members,
};

/* Whether `obj` is a RouteRecord: its type or a direct subclass (forwarder.OutRoute) decided from the type alone,
 * anything else by PyType_IsSubtype's walk of the type's MRO (~35 instructions per egress packet at 200 calls, when
 * every route is an OutRoute). */
static inline int is_route_record(PyObject *obj) {
    PyTypeObject *type = Py_TYPE(obj);
    return type == &RouteRecordType || type->tp_base == &RouteRecordType || PyType_IsSubtype(type, &RouteRecordType);
}

/* `route` as its record, or NULL with TypeError: the step forwards only on routes that are RouteRecords. */
static inline RouteRecord *route_record(PyObject *route) {
    if (is_route_record(route))
        return (RouteRecord *)route;
    PyErr_Format(PyExc_TypeError, "a route must be a RouteRecord (forwarder.OutRoute), not %.100s",
                 Py_TYPE(route)->tp_name);
    return NULL;
}

#endif
