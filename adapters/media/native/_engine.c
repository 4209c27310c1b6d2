/* callsd's native forwarding step: recvmmsg -> SRTP unprotect -> per-receiver rewrite -> SRTP protect -> sendmmsg.
 *
 * Theory of operation (docs/adr/0009-native-fast-path.md)
 * ----------------------------------------------------------
 * Python stays the owner of every table and of every decision that is not per packet. This module only runs the
 * per-packet rules of adapters/media/transport.py (UdpEndpoint._drain/_handle, Peer.send_rtp) and
 * adapters/media/forwarder.py (Forwarder.on_rtp) on the same Python objects: the endpoint's address table
 * (dict addr -> Peer), each Peer's SrtpContext and session (`peer.data`: inbound SSRC table, `closed`), each
 * InTrack's routes and each OutRoute's numbering. It reads them with the C API and writes the per-packet state
 * (sequence offsets, counts, reception statistics, the NACK cache) back into them at once, so the Python slow
 * paths (RTCP reports, NACK answers, pause/resume) see exactly what the Python path would have left, and nothing
 * can go stale between the two.
 *
 * Engine.step(fd, budget) drains the socket in batches of up to BATCH datagrams (recvmmsg, with the kernel's arrival
 * time of each for transport-cc: arrival_step.h, docs/adr/0035) and handles every
 * datagram it can: SRTP (not SRTCP) from an address a peer authenticated, with a native SRTP context, whose
 * session publishes that SSRC. Sends are protected at once into a send queue and leave in one sendmmsg at the end of
 * the step (or when the queue is full). It returns at the first datagram it does not handle (STUN, DTLS, RTCP, an
 * unknown address or SSRC...), after flushing the queue and the counters, so Python handles it in arrival order and
 * the next step continues with the datagrams still buffered. Python exceptions raised while forwarding (e.g. a
 * table that breaks its contract) are returned, not raised, so the caller counts them like the Python path's
 * per-datagram `except Exception`.
 *
 * SrtpSession is one SRTP session on OpenSSL's libcrypto (srtp_transform.h, docs/adr/0026): the same policy and
 * outcomes as the libsrtp session adapters/media/srtp.py builds through pylibsrtp (any SSRC, replay window 1024,
 * repeats allowed on send).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include "rtp_rules.h"
#include "srtp_session.h"
#include "pyslots.h"
#include "route_record.h"  /* OutRoute's per-packet state as C fields */
#include "track_record.h"  /* InTrack's */
#include "addresses.h"
#include "arrival_log.h"

#define BATCH 64
#define CACHE_MASK 511

#include "send_gso.h"
#include "engine_state.h"   /* the Engine object, its batches and counter deltas */
#include "twcc_step.h"
#include "send_state.h"     /* a route's cached send state (transmit session, sequencer, address) */
#include "prefetch.h"       /* a packet's routes, level by level, before forwarding */
#include "forward_step.h"   /* Forwarder.on_rtp and Peer.send_rtp */
#include "arrival_step.h"   /* transport-cc arrivals toward publishers */
#include "simulcast_step.h"
#include "rtcp_batch.h"     /* the reporting round's SRTCP in one sendmmsg */

/* What the step does with one datagram. */
typedef struct {
    int kind;      /* STEP_RAW / STEP_RTP to hand back, or -1: handled here */
    PyObject *a;   /* owned */
    PyObject *b;   /* owned */
} outcome;

/* The session's InTrack for the packet's SSRC (new reference), Py_None (new ref) when Python must see the packet,
 * Py_NotImplemented (new ref) when the session is open but its `inbound` lacks the SSRC, NULL with an exception set
 * on failure. */
static PyObject *find_track(PyObject *peer, const uint8_t *d) {
    PyObject *session = cs_getattr(peer, s_data);
    if (session == NULL)
        return NULL;
    if (session == Py_None)
        return session;
    int closed = get_truth(session, s_closed);
    if (closed != 0) {
        Py_DECREF(session);
        if (closed < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return Py_NewRef(Py_Ellipsis); /* closed: plane.on_rtp drops it silently */
    }
    PyObject *inbound = cs_getattr(session, s_inbound);
    Py_DECREF(session);
    if (inbound == NULL || !PyDict_Check(inbound)) {
        Py_XDECREF(inbound);
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (d[0] >> 6 != 2) {
        Py_DECREF(inbound);
        Py_RETURN_NONE;
    }
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    PyObject *key = PyLong_FromUnsignedLong(ssrc);
    if (key == NULL) {
        Py_DECREF(inbound);
        return NULL;
    }
    PyObject *track = PyDict_GetItemWithError(inbound, key);
    Py_DECREF(key);
    Py_DECREF(inbound);
    if (track == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return Py_NewRef(Py_NotImplemented); /* not in `inbound`: forward_other's tables, else Python */
    }
    return Py_NewRef(track);
}

/* Handle datagram `i` of the receive batch: 0 (see `out`), or -1 with an exception set. */
static int handle(Engine *self, int i, outcome *out) {
    uint8_t *d = self->rbuf[i];
    size_t n = self->rmsg[i].msg_len;
    self->datagram_serial++; /* a new packet: no route's extension block is rewritten yet (forward_route) */
    out->kind = -1;
    out->a = out->b = NULL;
    PyObject *addr = NULL, *peer = NULL;
    int rtp = n >= 12 && d[0] >= 128 && d[0] <= 191 && !(d[1] >= 192 && d[1] <= 223);
    if (rtp) {
        addr = rx_address(self, &self->raddr[i]);
        if (addr == NULL)
            return -1;
        peer = PyDict_GetItemWithError(self->by_addr, addr);
        if (peer == NULL && PyErr_Occurred()) {
            Py_DECREF(addr);
            return -1;
        }
        Py_XINCREF(peer); /* borrowed from by_addr, which Python code may change */
    }
    PyObject *rx = NULL;
    if (peer != NULL) {
        PyObject *srtp = cs_getattr(peer, s_srtp);
        if (srtp == NULL) {
            Py_DECREF(addr);
            Py_DECREF(peer);
            return -1;
        }
        if (srtp != Py_None) {
            rx = cs_getattr(srtp, s_rx);
            if (rx == NULL)
                PyErr_Clear();
            else if (Py_TYPE(rx) != &SrtpSessionType)
                Py_CLEAR(rx);
        }
        Py_DECREF(srtp);
    }
    if (rx == NULL) { /* Python's per-datagram path does all of it, counters included */
        Py_XDECREF(peer);
        out->kind = STEP_RAW;
        out->a = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)n);
        /* the memo's tuple: the one ICE keys the address table with (UdpEndpoint._on_stun), so that the RTP
         * lookups that follow find their key by identity, without comparing two equal tuples */
        out->b = addr != NULL ? addr : rx_address(self, &self->raddr[i]);
        if (out->a == NULL || out->b == NULL) {
            Py_CLEAR(out->a);
            Py_CLEAR(out->b);
            return -1;
        }
        return 0;
    }
    Py_DECREF(addr);
    self->td.datagrams_in++;
    self->td.bytes_in += (long long)n;
    int len = (int)n;
    int st = n > MAX_PACKET ? SRTP_BAD_PARAM : session_unprotect((SrtpSession *)rx, d, &len);
    Py_DECREF(rx);
    if (st != SRTP_OK) {
        if (st == SRTP_AUTH_FAIL)
            self->td.drop_srtp_auth++;
        else if (st == SRTP_REPLAY_FAIL || st == SRTP_REPLAY_OLD)
            self->td.drop_replay++;
        else
            self->td.drop_srtp_other++;
        Py_DECREF(peer);
        return 0;
    }
    self->td.rtp_in++;
    self->td.rtp_bytes_in += (long long)n;
    if (record_arrival(peer, d, (size_t)len, self->rarrival[i]) < 0) {
        Py_DECREF(peer);
        return -1;
    }
    PyObject *track = self->forwarder != Py_None ? find_track(peer, d) : Py_NewRef(Py_None);
    if (track == NULL) {
        Py_DECREF(peer);
        return -1;
    }
    int rc = 0;
    if (track == Py_NotImplemented) {
        Py_DECREF(track);
        rc = forward_other(self, peer, d, (size_t)len);
        if (rc != 0) {
            Py_DECREF(peer);
            return rc < 0 ? -1 : 0;
        }
        track = Py_NewRef(Py_None);
    }
    if (track == Py_None) {
        out->kind = STEP_RTP;
        out->a = peer;
        out->b = PyBytes_FromStringAndSize((const char *)d, len);
        if (out->b == NULL) {
            Py_CLEAR(out->a);
            rc = -1;
        }
        Py_DECREF(track);
        return rc;
    }
    if (track != Py_Ellipsis)
        rc = forward(self, track, d, (size_t)len);
    Py_DECREF(track);
    Py_DECREF(peer);
    return rc;
}

static PyObject *finish(Engine *self, long long read, int kind, PyObject *a, PyObject *b) {
    flush_sends(self);
    flush_counters(self);
    PyObject *r = Py_BuildValue("(LiOO)", read, kind, a ? a : Py_None, b ? b : Py_None);
    Py_XDECREF(a);
    Py_XDECREF(b);
    return r;
}

static PyObject *Engine_step(Engine *self, PyObject *args) {
    int fd;
    long long budget;
    if (!PyArg_ParseTuple(args, "iL", &fd, &budget))
        return NULL;
    if (fd != self->sock)
        flush_sends(self);
    self->sock = fd;
    long long read = 0;
    for (;;) {
        if (self->rpos >= self->rcount) {
            self->rpos = self->rcount = 0;
            if (read >= budget)
                return finish(self, read, STEP_BUDGET, NULL, NULL);
            for (int i = 0; i < BATCH; i++) {
                memset(&self->rmsg[i], 0, sizeof self->rmsg[i]);
                self->rmsg[i].msg_hdr.msg_name = &self->raddr[i];
                self->rmsg[i].msg_hdr.msg_namelen = sizeof self->raddr[i];
                self->rmsg[i].msg_hdr.msg_iov = &self->riov[i];
                self->rmsg[i].msg_hdr.msg_iovlen = 1;
                self->rmsg[i].msg_hdr.msg_control = self->rctl[i].buf;
                self->rmsg[i].msg_hdr.msg_controllen = sizeof self->rctl[i].buf;
            }
            long long want = budget - read;
            int got = recvmmsg(fd, self->rmsg, (unsigned)(want < BATCH ? want : BATCH), MSG_DONTWAIT, NULL);
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return finish(self, read, STEP_EMPTY, NULL, NULL);
                if (errno == EINTR)
                    continue;
                if (errno == EBADF || errno == ENOTSOCK) {
                    flush_counters(self);
                    return PyErr_SetFromErrno(PyExc_OSError);
                }
                self->td.drop_send_error++; /* e.g. ICMP port unreachable reported on the next read */
                read++;
                continue;
            }
            self->rcount = got;
            arrival_times(self, got);
        }
        int i = self->rpos++;
        read++;
        outcome o;
        if (handle(self, i, &o) < 0) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (tb != NULL && value != NULL)
                PyException_SetTraceback(value, tb);
            Py_XDECREF(type);
            Py_XDECREF(tb);
            return finish(self, read, STEP_ERROR, value, NULL);
        }
        if (o.kind >= 0)
            return finish(self, read, o.kind, o.a, o.b);
    }
}

static PyMethodDef Engine_methods[] = {
    {"step", (PyCFunction)Engine_step, METH_VARARGS,
     "step(fd, budget) -> (read, kind, a, b): handle datagrams until one needs Python (kind 2: a=data, "
     "b=address; 3: a=peer, b=plain RTP; 4: a=the exception raised while forwarding), the socket is empty "
     "(kind 0) or `budget` datagrams were read (kind 1)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Engine(by_addr, counters, forwarder, vad, simulcast=None): the native per-packet step of one UDP "
              "endpoint.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_traverse = (traverseproc)Engine_traverse,
    .tp_clear = (inquiry)Engine_clear,
    .tp_methods = Engine_methods,
};

/* ---- module --------------------------------------------------------------------------------------------------- */

/* The send state epoch (send_epoch.h) as it stands: what moves it and what does not is tested through this. */
static PyObject *send_state_epoch_py(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(send_state_epoch);
}

static PyMethodDef engine_functions[] = {
    {"send_state_epoch", send_state_epoch_py, METH_NOARGS,
     "send_state_epoch() -> int: the counter whose move makes every route read its cached send state again."},
    {"kdf", srtp_kdf_py, METH_VARARGS, "kdf(master_key, master_salt, label, length): the SRTP KDF (RFC 3711 4.3)."},
    {"stamp_transport_seq", (PyCFunction)twcc_stamp_function, METH_VARARGS,
     "stamp_transport_seq(packet, ext_id, seq) -> bytes | None: core.wire.transport_seq's rules in C (tests)."},
    {"send_rtcp_batch", send_rtcp_batch, METH_VARARGS,
     "send_rtcp_batch(fd, items) -> (sent, bytes, would_block, errors, srtp_failed, bad): SRTCP-protect each "
     "(SrtpSession, packet, address) and send them with sendmmsg (rtcp_batch.h)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT, "_engine", "callsd's native forwarding step (see _engine.c).", -1, engine_functions, NULL,
    NULL, NULL, NULL,
};

#define INTERN(var, text)                                                                                       \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return NULL;

PyMODINIT_FUNC PyInit__engine(void) {
    INTERN(s_srtp, "srtp") INTERN(s_rx, "_rx") INTERN(s_tx, "_tx") INTERN(s_data, "data")
    INTERN(s_closed, "closed") INTERN(s_inbound, "inbound") INTERN(s_octets, "octets") INTERN(s_last_ts, "last_ts")
    INTERN(s_session, "session") INTERN(s_routes, "routes") INTERN(s_live, "live") INTERN(s_cache, "cache")
    INTERN(s_pt_map, "pt_map") INTERN(s_receiver, "receiver") INTERN(s_peer, "peer") INTERN(s_remap, "remap")
    INTERN(s_identity, "identity") INTERN(s_table, "table") INTERN(s_ssrc, "ssrc") INTERN(s_address, "address")
    INTERN(s_send_rtp, "send_rtp") INTERN(s_clock, "_clock") INTERN(s_twcc, "twcc") INTERN(s_stamp, "stamp")
    INTERN(s_on_voice, "_on_voice")
    INTERN(s_twcc_in, "twcc_in") INTERN(s_ext_id, "ext_id") INTERN(s_arrived, "arrived") INTERN(s_log, "log")
    INTERN(s_drain, "drain")
    slot_plain_setattro = send_state_setattro;
    if (video_intern() < 0 || clock_intern() < 0 || counters_intern() < 0)
        return NULL;
    if (srtp_keys_global_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libcrypto offers no HMAC");
        return NULL;
    }
    if (PyType_Ready(&SrtpSessionType) < 0 || PyType_Ready(&EngineType) < 0 || PyType_Ready(&ArrivalLogType) < 0 ||
        PyType_Ready(&RouteRecordType) < 0 || PyType_Ready(&SequencerRecordType) < 0 ||
        PyType_Ready(&TrackRecordType) < 0 || PyType_Ready(&SendStateOwnerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&engine_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SrtpSession", (PyObject *)&SrtpSessionType) < 0 ||
        PyModule_AddObjectRef(m, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddObjectRef(m, "ArrivalLog", (PyObject *)&ArrivalLogType) < 0 ||
        PyModule_AddObjectRef(m, "RouteRecord", (PyObject *)&RouteRecordType) < 0 ||
        PyModule_AddObjectRef(m, "SequencerRecord", (PyObject *)&SequencerRecordType) < 0 ||
        PyModule_AddObjectRef(m, "TrackRecord", (PyObject *)&TrackRecordType) < 0 ||
        PyModule_AddObjectRef(m, "SendStateOwner", (PyObject *)&SendStateOwnerType) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_CACHE", ROUTE_CACHE) < 0 ||
        PyModule_AddObject(m, "RATE_WINDOW_S", PyFloat_FromDouble(RATE_WINDOW_S)) < 0 ||
        PyModule_AddObject(m, "DECIDE_INTERVAL_S", PyFloat_FromDouble(DECIDE_INTERVAL_S)) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0 || PyModule_AddIntConstant(m, "BATCH", BATCH) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_HISTORY", TWCC_HISTORY) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_FIRST", TWCC_FIRST) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_COVER_MS", (long)TWCC_COVER_MS) < 0 ||
        PyModule_AddIntConstant(m, "GCM_IV_AS_PARAMETER", srtp_gcm_iv_param) < 0 ||
        PyModule_AddIntConstant(m, "GCM_METHOD_TABLE", srtp_gcm_method != NULL) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
