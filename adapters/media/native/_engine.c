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
 * Engine.step(fd, budget) drains the socket in batches of up to BATCH datagrams (recvmmsg) and handles every
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
#include "addresses.h"
#include "arrival_log.h"

#define BATCH 64
#define CACHE_MASK 511

#include "send_gso.h"

enum { STEP_EMPTY = 0, STEP_BUDGET = 1, STEP_RAW = 2, STEP_RTP = 3, STEP_ERROR = 4 };

/* ---- interned attribute names ----------------------------------------------------------------------------- */

static PyObject *s_srtp, *s_rx, *s_tx, *s_data, *s_closed, *s_inbound, *s_packets, *s_octets, *s_started,
    *s_base_seq, *s_max_seq, *s_cycles, *s_last_ts, *s_last_rx, *s_level_id, *s_vad_score, *s_speaking,
    *s_session, *s_routes, *s_live, *s_cache, *s_pt_map, *s_receiver, *s_peer, *s_resync, *s_seq_offset,
    *s_last_seq, *s_remap, *s_identity, *s_table, *s_ts_offset, *s_ssrc, *s_address, *s_send_rtp, *s_clock,
    *s_on_voice, *s_twcc, *s_stamp;
static PyObject *s_twcc_in, *s_ext_id, *s_arrived, *s_log, *s_drain; /* transport-cc toward publishers */

/* ---- Engine ------------------------------------------------------------------------------------------------- */

/* Counter deltas of one step, added to the Python counter objects before control returns to Python. */
typedef struct {
    long long datagrams_in, bytes_in, rtp_in, rtp_bytes_in, rtp_out, rtp_bytes_out, drop_srtp_auth, drop_replay,
        drop_srtp_other, drop_not_ready, drop_send_buffer_full, drop_send_error;
} transport_delta;

typedef struct {
    long long rtp_in, rtp_in_bytes, rtp_out, rtp_out_bytes, drop_malformed, drop_padding, drop_no_route, rtx_in;
} forwarder_delta;

typedef struct {
    PyObject_HEAD
    addr_memo rx_memo[ADDR_CACHE];
    addr_memo tx_memo[ADDR_CACHE];
    PyObject *by_addr;    /* dict: (host, port) -> Peer (the endpoint's, not a copy) */
    PyObject *tcounters;  /* TransportCounters */
    PyObject *forwarder;  /* Forwarder or None: without one every RTP packet goes back to Python */
    PyObject *fcounters;  /* ForwarderCounters or None */
    PyObject *simulcast;  /* SimulcastForwarder or None: its layers are forwarded here too (simulcast_step.h) */
    PyObject *sequencer;  /* the TransportSequencer type: such a peer's packets are stamped here (twcc_step.h) */
    int vad_threshold, vad_on, vad_max;
    transport_delta td;
    forwarder_delta fd;
    /* receive batch */
    struct mmsghdr rmsg[BATCH];
    struct iovec riov[BATCH];
    struct sockaddr_storage raddr[BATCH];
    uint8_t rbuf[BATCH][BUF];
    int rcount, rpos;
    /* send queue */
    int sock;
    struct mmsghdr smsg[BATCH];
    struct iovec siov[BATCH];
    struct sockaddr_storage saddr[BATCH];
    uint8_t sbuf[BATCH][BUF];
    int squeued;
    int gso; /* UDP GSO for runs to one destination (send_gso.h); off after the kernel refused it once */
    uint8_t blk[BUF];
    uint8_t rtxbuf[BUF]; /* the original an RTX packet carries (simulcast_step.h) */
    uint8_t stampbuf[BUF]; /* a packet with its transport-wide sequence number (twcc_step.h) */
} Engine;

static PyTypeObject EngineType;

static int Engine_init(Engine *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"by_addr", "counters", "forwarder", "vad", "simulcast", "sequencer", NULL};
    PyObject *by_addr, *counters, *forwarder, *simulcast = Py_None, *sequencer = Py_None;
    int thr = 60, on = 15, max = 30;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO(iii)|OO", kwlist, &PyDict_Type, &by_addr, &counters,
                                     &forwarder, &thr, &on, &max, &simulcast, &sequencer))
        return -1;
    if (sequencer != Py_None && !PyType_Check(sequencer)) {
        PyErr_SetString(PyExc_TypeError, "sequencer must be a type or None");
        return -1;
    }
    Py_XSETREF(self->sequencer, Py_NewRef(sequencer));
    Py_XSETREF(self->simulcast, Py_NewRef(forwarder == Py_None ? Py_None : simulcast));
    Py_XSETREF(self->by_addr, Py_NewRef(by_addr));
    Py_XSETREF(self->tcounters, Py_NewRef(counters));
    Py_XSETREF(self->forwarder, Py_NewRef(forwarder));
    Py_CLEAR(self->fcounters);
    if (forwarder != Py_None) {
        self->fcounters = PyObject_GetAttrString(forwarder, "counters");
        if (self->fcounters == NULL)
            return -1;
    }
    const char *gso = getenv("CALLSD_NATIVE_GSO");
    self->gso = !(gso != NULL && strcmp(gso, "0") == 0);
    self->vad_threshold = thr;
    self->vad_on = on;
    self->vad_max = max;
    for (int i = 0; i < BATCH; i++) {
        self->riov[i].iov_base = self->rbuf[i];
        self->riov[i].iov_len = BUF;
        self->siov[i].iov_base = self->sbuf[i];
    }
    return 0;
}

static int Engine_traverse(Engine *self, visitproc visit, void *arg) {
    for (int i = 0; i < ADDR_CACHE; i++) {
        Py_VISIT(self->rx_memo[i].tuple);
        Py_VISIT(self->tx_memo[i].tuple);
    }
    Py_VISIT(self->by_addr);
    Py_VISIT(self->tcounters);
    Py_VISIT(self->forwarder);
    Py_VISIT(self->fcounters);
    Py_VISIT(self->simulcast);
    Py_VISIT(self->sequencer);
    return 0;
}

static int Engine_clear(Engine *self) {
    for (int i = 0; i < ADDR_CACHE; i++) {
        Py_CLEAR(self->rx_memo[i].tuple);
        Py_CLEAR(self->tx_memo[i].tuple);
    }
    Py_CLEAR(self->by_addr);
    Py_CLEAR(self->tcounters);
    Py_CLEAR(self->forwarder);
    Py_CLEAR(self->fcounters);
    Py_CLEAR(self->simulcast);
    Py_CLEAR(self->sequencer);
    return 0;
}

static void Engine_dealloc(Engine *self) {
    PyObject_GC_UnTrack(self);
    Engine_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Add the step's counter deltas to the Python counter objects; keeps going after a failure (reports it). */
static int flush_counters(Engine *self) {
    int rc = 0;
    struct {
        const char *name;
        long long *value;
        PyObject *target;
    } rows[] = {
        {"datagrams_in", &self->td.datagrams_in, self->tcounters},
        {"bytes_in", &self->td.bytes_in, self->tcounters},
        {"rtp_in", &self->td.rtp_in, self->tcounters},
        {"rtp_bytes_in", &self->td.rtp_bytes_in, self->tcounters},
        {"rtp_out", &self->td.rtp_out, self->tcounters},
        {"rtp_bytes_out", &self->td.rtp_bytes_out, self->tcounters},
        {"drop_srtp_auth", &self->td.drop_srtp_auth, self->tcounters},
        {"drop_replay", &self->td.drop_replay, self->tcounters},
        {"drop_srtp_other", &self->td.drop_srtp_other, self->tcounters},
        {"drop_not_ready", &self->td.drop_not_ready, self->tcounters},
        {"drop_send_buffer_full", &self->td.drop_send_buffer_full, self->tcounters},
        {"drop_send_error", &self->td.drop_send_error, self->tcounters},
        {"rtp_in", &self->fd.rtp_in, self->fcounters},
        {"rtp_in_bytes", &self->fd.rtp_in_bytes, self->fcounters},
        {"rtp_out", &self->fd.rtp_out, self->fcounters},
        {"rtp_out_bytes", &self->fd.rtp_out_bytes, self->fcounters},
        {"drop_malformed", &self->fd.drop_malformed, self->fcounters},
        {"drop_padding", &self->fd.drop_padding, self->fcounters},
        {"drop_no_route", &self->fd.drop_no_route, self->fcounters},
        {"rtx_in", &self->fd.rtx_in, self->fcounters},
    };
    PyObject *saved_type, *saved_value, *saved_tb;
    PyErr_Fetch(&saved_type, &saved_value, &saved_tb);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (*rows[i].value == 0 || rows[i].target == NULL)
            continue;
        long long v = *rows[i].value;
        *rows[i].value = 0;
        PyObject *name = PyUnicode_InternFromString(rows[i].name);
        if (name == NULL || add_ll(rows[i].target, name, v) < 0) {
            PyErr_Clear();
            rc = -1;
        }
        Py_XDECREF(name);
    }
    PyErr_Restore(saved_type, saved_value, saved_tb);
    return rc;
}

/* Send everything queued (send_gso.h: one sendmmsg, runs to one destination as UDP GSO sends); a refused datagram
 * is counted and skipped. */
static void flush_sends(Engine *self) {
    send_counts c = {0, 0, 0, 0};
    gso_flush(self->sock, self->smsg, self->squeued, &c, &self->gso);
    self->td.rtp_out += c.sent;
    self->td.rtp_bytes_out += c.bytes;
    self->td.drop_send_buffer_full += c.would_block;
    self->td.drop_send_error += c.errors;
    self->squeued = 0;
}

/* The address tuple of a received datagram (new reference), memoized. */
static PyObject *rx_address(Engine *self, const struct sockaddr_storage *sa) {
    socklen_t len = sockaddr_len(sa);
    addr_memo *m = &self->rx_memo[sockaddr_slot(sa, len)];
    if (m->tuple != NULL && m->len == len && memcmp(&m->sa, sa, len) == 0)
        return Py_NewRef(m->tuple);
    PyObject *t = sockaddr_to_address(sa);
    if (t == NULL || t == Py_None)
        return t;
    Py_XSETREF(m->tuple, Py_NewRef(t));
    memcpy(&m->sa, sa, len);
    m->len = len;
    return t;
}

/* The sockaddr of a destination tuple, memoized by identity: 0, or -1 when it is not a numeric address. */
static int tx_sockaddr(Engine *self, PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
    addr_memo *m = &self->tx_memo[((uintptr_t)addr >> 4) % ADDR_CACHE];
    if (m->tuple == addr) {
        memcpy(out, &m->sa, m->len);
        *len = m->len;
        return 0;
    }
    if (address_to_sockaddr(addr, out, len) < 0)
        return -1;
    Py_XSETREF(m->tuple, Py_NewRef(addr));
    memcpy(&m->sa, out, *len);
    m->len = *len;
    return 0;
}

#include "twcc_step.h"

/* Peer.send_rtp for one rewritten packet: protect into the send queue, or Python's send_rtp when the peer's
 * transmit context or address is not one this module handles. A peer with a transport-wide sequencer (`twcc` not
 * None) has the packet stamped first: by sequencer_stamp (twcc_step.h) on the TransportSequencer's own state, or by
 * a call to `twcc.stamp` for any other stamper. -1 with an exception set on failure. */
static int send_to_peer(Engine *self, PyObject *peer, const uint8_t *out, size_t len) {
    PyObject *tx = cs_getattr(peer, s_tx);
    if (tx == NULL)
        return -1;
    if (tx == Py_None) {
        Py_DECREF(tx);
        self->td.drop_not_ready++;
        return 0;
    }
    PyObject *twcc = cs_getattr(peer, s_twcc);
    if (twcc == NULL) {
        Py_DECREF(tx);
        return -1;
    }
    PyObject *address = NULL;
    if (Py_TYPE(tx) == &SrtpSessionType)
        address = cs_getattr(peer, s_address);
    if (address == NULL && PyErr_Occurred()) {
        Py_DECREF(tx);
        Py_DECREF(twcc);
        return -1;
    }
    int slot = self->squeued;
    socklen_t alen = 0;
    if (address == NULL || tx_sockaddr(self, address, &self->saddr[slot], &alen) < 0) {
        Py_DECREF(tx);
        Py_DECREF(twcc);
        Py_XDECREF(address);
        flush_sends(self); /* keep the order of this peer's datagrams */
        PyObject *r;
        PyObject *packet = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)len);
        if (packet == NULL)
            return -1;
        r = PyObject_CallMethodOneArg(peer, s_send_rtp, packet);
        Py_DECREF(packet);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    Py_DECREF(address);
    PyObject *stamped = NULL; /* the stamped copy; `out` points into it */
    if (twcc != Py_None && (PyObject *)Py_TYPE(twcc) == self->sequencer) { /* stamped here, on the object */
        if (sequencer_stamp(twcc, self->stampbuf, &out, &len) < 0) {
            Py_DECREF(tx);
            Py_DECREF(twcc);
            return -1;
        }
    } else if (twcc != Py_None) {
        PyObject *packet = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)len);
        stamped = packet == NULL ? NULL : PyObject_CallMethodOneArg(twcc, s_stamp, packet);
        Py_XDECREF(packet);
        if (stamped == NULL || !PyBytes_Check(stamped)) {
            if (stamped != NULL)
                PyErr_SetString(PyExc_TypeError, "twcc.stamp must return bytes");
            Py_XDECREF(stamped);
            Py_DECREF(tx);
            Py_DECREF(twcc);
            return -1;
        }
        out = (const uint8_t *)PyBytes_AS_STRING(stamped);
        len = (size_t)PyBytes_GET_SIZE(stamped);
    }
    Py_DECREF(twcc);
    if (len > MAX_PACKET) {
        Py_XDECREF(stamped);
        Py_DECREF(tx);
        self->td.drop_srtp_other++;
        return 0;
    }
    memcpy(self->sbuf[slot], out, len);
    Py_XDECREF(stamped);
    int plen = (int)len;
    int rc = session_protect((SrtpSession *)tx, self->sbuf[slot], &plen);
    Py_DECREF(tx);
    if (rc != SRTP_OK) {
        self->td.drop_srtp_other++;
        return 0;
    }
    self->siov[slot].iov_len = (size_t)plen;
    memset(&self->smsg[slot], 0, sizeof self->smsg[slot]);
    self->smsg[slot].msg_hdr.msg_name = &self->saddr[slot];
    self->smsg[slot].msg_hdr.msg_namelen = alen;
    self->smsg[slot].msg_hdr.msg_iov = &self->siov[slot];
    self->smsg[slot].msg_hdr.msg_iovlen = 1;
    if (++self->squeued == BATCH)
        flush_sends(self);
    return 0;
}

/* Forwarder._vad: debounced voice activity from the audio level. */
static int vad(Engine *self, PyObject *track, int level) {
    long long score;
    if (get_ll(track, s_vad_score, &score) < 0)
        return -1;
    if (level <= self->vad_threshold) {
        if (score < self->vad_max)
            score++;
    } else if (score > 0) {
        score--;
    }
    if (set_ll(track, s_vad_score, score) < 0)
        return -1;
    int speaking = get_truth(track, s_speaking);
    if (speaking < 0)
        return -1;
    int change = -1;
    if (!speaking && score >= self->vad_on)
        change = 1;
    else if (speaking && score == 0)
        change = 0;
    if (change < 0)
        return 0;
    if (cs_setattr(track, s_speaking, change ? Py_True : Py_False) < 0)
        return -1;
    PyObject *session = cs_getattr(track, s_session);
    if (session == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodObjArgs(self->forwarder, s_on_voice, session, change ? Py_True : Py_False,
                                             NULL);
    Py_DECREF(session);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* One route's copy of the packet (the body of Forwarder.on_rtp's loop). */
static int forward_route(Engine *self, PyObject *route, const uint8_t *d, size_t n, const cs_layout *lay,
                         long long seq, long long ts, int pt, int mk) {
    PyObject *pt_map = cs_getattr(route, s_pt_map);
    if (pt_map == NULL)
        return -1;
    PyObject *key = PyLong_FromLong(pt); /* a cached small int: no allocation */
    PyObject *opt_obj = NULL;
    if (key != NULL && PyDict_CheckExact(pt_map)) {
        opt_obj = PyDict_GetItemWithError(pt_map, key);
        Py_XINCREF(opt_obj);
        if (opt_obj == NULL && !PyErr_Occurred())
            opt_obj = Py_NewRef(Py_None);
    } else if (key != NULL) {
        opt_obj = PyObject_CallMethod(pt_map, "get", "O", key);
    }
    Py_XDECREF(key);
    Py_DECREF(pt_map);
    if (opt_obj == NULL)
        return -1;
    if (opt_obj == Py_None) {
        Py_DECREF(opt_obj);
        return 0;
    }
    long long opt = PyLong_AsLongLong(opt_obj);
    Py_DECREF(opt_obj);
    if (opt == -1 && PyErr_Occurred())
        return -1;
    PyObject *receiver = cs_getattr(route, s_receiver);
    if (receiver == NULL)
        return -1;
    PyObject *peer = cs_getattr(receiver, s_peer);
    Py_DECREF(receiver);
    if (peer == NULL)
        return -1;
    int rc = -1;
    if (peer == Py_None) {
        rc = 0;
        goto done;
    }
    int resync = get_truth(route, s_resync);
    if (resync < 0)
        goto done;
    long long seq_offset, last_seq;
    if (get_ll(route, s_last_seq, &last_seq) < 0)
        goto done;
    if (resync) {
        seq_offset = (last_seq + 1 - seq) & 0xFFFF;
        if (set_ll(route, s_seq_offset, seq_offset) < 0 || cs_setattr(route, s_resync, Py_False) < 0)
            goto done;
    } else if (get_ll(route, s_seq_offset, &seq_offset) < 0) {
        goto done;
    }
    long long oseq = (seq + seq_offset) & 0xFFFF;
    if (((oseq - last_seq) & 0xFFFF) < 0x8000 && set_ll(route, s_last_seq, oseq) < 0)
        goto done;
    const uint8_t *blk = NULL;
    size_t blen = 0;
    if (lay->has_ext) {
        blen = lay->start - lay->off;
        PyObject *remap = cs_getattr(route, s_remap);
        if (remap == NULL)
            goto done;
        int identity = get_truth(remap, s_identity);
        PyObject *table = identity == 0 ? cs_getattr(remap, s_table) : NULL;
        Py_DECREF(remap);
        if (identity < 0 || (identity == 0 && table == NULL))
            goto done;
        if (identity) {
            blk = d + lay->off;
        } else {
            if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256) {
                Py_DECREF(table);
                PyErr_SetString(PyExc_TypeError, "ExtensionRemap.table must be 256 bytes");
                goto done;
            }
            memcpy(self->blk, d + lay->off, blen);
            int ok = cs_rewrite_ext_block(self->blk, blen, (const uint8_t *)PyBytes_AS_STRING(table));
            Py_DECREF(table);
            if (!ok) {
                self->fd.drop_malformed++;
                rc = 0;
                goto done;
            }
            blk = self->blk;
        }
    }
    long long ts_offset, ssrc;
    if (get_ll(route, s_ts_offset, &ts_offset) < 0 || get_ll(route, s_ssrc, &ssrc) < 0)
        goto done;
    long long b1 = mk | opt;
    if (opt < 0 || b1 > 255 || ssrc < 0 || ssrc > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "payload type or SSRC out of range for an RTP header");
        goto done;
    }
    uint8_t out[BUF];
    size_t len = cs_build(out, sizeof out, d, n, lay, (uint8_t)b1, (uint16_t)oseq,
                          (uint32_t)((ts + ts_offset) & 0xFFFFFFFFLL), (uint32_t)ssrc, blk, blen);
    if (len == 0) {
        PyErr_SetString(PyExc_ValueError, "rewritten packet too long");
        goto done;
    }
    if (send_to_peer(self, peer, out, len) < 0)
        goto done;
    long long plen = (long long)n - (long long)lay->start;
    if (add_ll(route, s_packets, 1) < 0 || add_ll(route, s_octets, plen) < 0)
        goto done;
    self->fd.rtp_out++;
    self->fd.rtp_out_bytes += (long long)len;
    rc = 0;
done:
    Py_DECREF(peer);
    return rc;
}

/* Forwarder.on_rtp for a packet whose SSRC the publisher's session knows. */
static int forward(Engine *self, PyObject *track, const uint8_t *d, size_t n) {
    long long seq = ((long long)d[2] << 8) | d[3];
    long long ts = ((long long)d[4] << 24) | ((long long)d[5] << 16) | ((long long)d[6] << 8) | d[7];
    self->fd.rtp_in++;
    self->fd.rtp_in_bytes += (long long)n;
    if (add_ll(track, s_packets, 1) < 0 || add_ll(track, s_octets, (long long)n) < 0)
        return -1;
    int started = get_truth(track, s_started);
    if (started < 0)
        return -1;
    long long base_seq = 0, max_seq = 0, cycles = 0;
    if (started && (get_ll(track, s_max_seq, &max_seq) < 0 || get_ll(track, s_cycles, &cycles) < 0))
        return -1;
    int was_started = started;
    long long old_max = max_seq, old_cycles = cycles;
    cs_track_seq(&started, &base_seq, &max_seq, &cycles, (int)seq);
    if (!was_started) {
        if (cs_setattr(track, s_started, Py_True) < 0 || set_ll(track, s_base_seq, base_seq) < 0 ||
            set_ll(track, s_max_seq, max_seq) < 0)
            return -1;
    } else {
        if (cycles != old_cycles && set_ll(track, s_cycles, cycles) < 0)
            return -1;
        if (max_seq != old_max && set_ll(track, s_max_seq, max_seq) < 0)
            return -1;
    }
    if (set_ll(track, s_last_ts, ts) < 0)
        return -1;
    PyObject *now = PyObject_CallMethodNoArgs(self->forwarder, s_clock);
    if (now == NULL)
        return -1;
    int set_rx = cs_setattr(track, s_last_rx, now);
    Py_DECREF(now);
    if (set_rx < 0)
        return -1;
    cs_layout lay;
    if (cs_split(d, n, &lay)) {
        self->fd.drop_malformed++;
        return 0;
    }
    if (lay.has_ext) {
        long long level_id;
        if (get_ll(track, s_level_id, &level_id) < 0)
            return -1;
        int level = level_id > 0 && level_id < 256 ? cs_read_audio_level(d, n, (int)level_id) : -1;
        if (level >= 0 && vad(self, track, level & 0x7F) < 0)
            return -1;
    }
    if ((d[0] & 0x20) && (long long)n - (long long)lay.start - d[n - 1] <= 0) {
        self->fd.drop_padding++;
        PyObject *routes = cs_getattr(track, s_routes);
        if (routes == NULL)
            return -1;
        PyObject *values = PyDict_Check(routes) ? PyDict_Values(routes) : NULL;
        Py_DECREF(routes);
        if (values == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "InTrack.routes must be a dict");
            return -1;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++) {
            PyObject *r = PyList_GET_ITEM(values, i);
            long long off;
            if (get_ll(r, s_seq_offset, &off) < 0 || set_ll(r, s_seq_offset, (off - 1) & 0xFFFF) < 0) {
                Py_DECREF(values);
                return -1;
            }
        }
        Py_DECREF(values);
        return 0;
    }
    PyObject *cache = cs_getattr(track, s_cache);
    if (cache == NULL)
        return -1;
    if (cache != Py_None) {
        PyObject *plain = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)n);
        PyObject *index = PyLong_FromLongLong(seq & CACHE_MASK);
        int bad = plain == NULL || index == NULL || PyObject_SetItem(cache, index, plain) < 0;
        Py_XDECREF(plain);
        Py_XDECREF(index);
        if (bad) {
            Py_DECREF(cache);
            return -1;
        }
    }
    Py_DECREF(cache);
    PyObject *live = cs_getattr(track, s_live);
    if (live == NULL)
        return -1;
    if (!PyTuple_Check(live)) {
        Py_DECREF(live);
        PyErr_SetString(PyExc_TypeError, "InTrack.live must be a tuple");
        return -1;
    }
    if (PyTuple_GET_SIZE(live) == 0) {
        Py_DECREF(live);
        self->fd.drop_no_route++;
        return 0;
    }
    int pt = d[1] & 0x7F, mk = d[1] & 0x80;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(live); i++) {
        if (forward_route(self, PyTuple_GET_ITEM(live, i), d, n, &lay, seq, ts, pt, mk) < 0) {
            Py_DECREF(live);
            return -1;
        }
    }
    Py_DECREF(live);
    return 0;
}

/* Transport-cc toward publishers (twcc_recv.py): a peer with a feedback sender (`twcc_in` not None) has the
 * transport-wide sequence number (extension `twcc_in.ext_id`, two bytes) of each RTP packet it sent, its SSRC and
 * when it arrived (CLOCK_MONOTONIC: time.monotonic's clock) appended to the sender's ArrivalLog (`twcc_in.log`,
 * created here on the first one; arrival_log.h), which Python drains once per feedback round: no Python call per
 * packet. A sender whose `log` is something else is told each arrival by `twcc_in.arrived(seq, ssrc, now)`. The
 * Python path records the same in `UdpEndpoint.handle_datagram`. 0, or -1 with an exception set. */
static int record_arrival(PyObject *peer, const uint8_t *d, size_t n) {
    PyObject *sink = cs_getattr(peer, s_twcc_in);
    if (sink == NULL || sink == Py_None) {
        Py_XDECREF(sink);
        PyErr_Clear();
        return 0;
    }
    long long ext_id;
    if (get_ll(sink, s_ext_id, &ext_id) < 0) {
        Py_DECREF(sink);
        return -1;
    }
    int len = 0;
    long at = ext_id > 0 && ext_id <= 255 ? cs_find_extension(d, n, (int)ext_id, &len) : -1;
    if (at < 0 || len != 2) {
        Py_DECREF(sink);
        return 0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    int seq = (int)d[at] << 8 | d[at + 1];
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    PyObject *log = cs_getattr(sink, s_log);
    if (log == NULL) { /* a sink without a log: told each arrival */
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_DECREF(sink);
            return -1;
        }
        PyErr_Clear();
        log = Py_NewRef(Py_Ellipsis);
    }
    if (log == Py_None) {
        Py_DECREF(log);
        log = PyObject_CallNoArgs((PyObject *)&ArrivalLogType);
        if (log == NULL || cs_setattr(sink, s_log, log) < 0) {
            Py_XDECREF(log);
            Py_DECREF(sink);
            return -1;
        }
    }
    int rc = 0;
    if (Py_TYPE(log) == &ArrivalLogType) {
        if (!arrival_log_add((ArrivalLog *)log, seq, ssrc, now)) { /* full: Python drains it, then it has room */
            PyObject *r = PyObject_CallMethodNoArgs(sink, s_drain);
            rc = r == NULL ? -1 : 0;
            Py_XDECREF(r);
            if (rc == 0 && !arrival_log_add((ArrivalLog *)log, seq, ssrc, now)) {
                PyErr_SetString(PyExc_RuntimeError, "twcc_in.drain() left its log full");
                rc = -1;
            }
        }
    } else {
        PyObject *seq_o = PyLong_FromLong(seq), *ssrc_o = PyLong_FromUnsignedLong(ssrc), *now_o = PyFloat_FromDouble(now);
        PyObject *r = seq_o != NULL && ssrc_o != NULL && now_o != NULL
                          ? PyObject_CallMethodObjArgs(sink, s_arrived, seq_o, ssrc_o, now_o, NULL)
                          : NULL;
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
        Py_XDECREF(seq_o);
        Py_XDECREF(ssrc_o);
        Py_XDECREF(now_o);
    }
    Py_DECREF(log);
    Py_DECREF(sink);
    return rc;
}

#include "simulcast_step.h"

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
        out->b = addr != NULL ? addr : sockaddr_to_address(&self->raddr[i]);
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
    if (record_arrival(peer, d, (size_t)len) < 0) {
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

static PyMethodDef engine_functions[] = {
    {"kdf", srtp_kdf_py, METH_VARARGS, "kdf(master_key, master_salt, label, length): the SRTP KDF (RFC 3711 4.3)."},
    {"stamp_transport_seq", (PyCFunction)twcc_stamp_function, METH_VARARGS,
     "stamp_transport_seq(packet, ext_id, seq) -> bytes | None: core.wire.transport_seq's rules in C (tests)."},
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
    INTERN(s_closed, "closed") INTERN(s_inbound, "inbound") INTERN(s_packets, "packets")
    INTERN(s_octets, "octets") INTERN(s_started, "started") INTERN(s_base_seq, "base_seq")
    INTERN(s_max_seq, "max_seq") INTERN(s_cycles, "cycles") INTERN(s_last_ts, "last_ts")
    INTERN(s_last_rx, "last_rx") INTERN(s_level_id, "level_id") INTERN(s_vad_score, "vad_score")
    INTERN(s_speaking, "speaking") INTERN(s_session, "session") INTERN(s_routes, "routes")
    INTERN(s_live, "live") INTERN(s_cache, "cache") INTERN(s_pt_map, "pt_map") INTERN(s_receiver, "receiver")
    INTERN(s_peer, "peer") INTERN(s_resync, "resync") INTERN(s_seq_offset, "seq_offset")
    INTERN(s_last_seq, "last_seq") INTERN(s_remap, "remap") INTERN(s_identity, "identity")
    INTERN(s_table, "table") INTERN(s_ts_offset, "ts_offset") INTERN(s_ssrc, "ssrc")
    INTERN(s_address, "address") INTERN(s_send_rtp, "send_rtp") INTERN(s_clock, "_clock") INTERN(s_twcc, "twcc") INTERN(s_stamp, "stamp")
    INTERN(s_on_voice, "_on_voice")
    INTERN(s_twcc_in, "twcc_in") INTERN(s_ext_id, "ext_id") INTERN(s_arrived, "arrived") INTERN(s_log, "log")
    INTERN(s_drain, "drain")
    if (video_intern() < 0 || twcc_intern() < 0)
        return NULL;
    if (srtp_keys_global_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libcrypto offers no HMAC");
        return NULL;
    }
    if (PyType_Ready(&SrtpSessionType) < 0 || PyType_Ready(&EngineType) < 0 || PyType_Ready(&ArrivalLogType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&engine_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SrtpSession", (PyObject *)&SrtpSessionType) < 0 ||
        PyModule_AddObjectRef(m, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddObjectRef(m, "ArrivalLog", (PyObject *)&ArrivalLogType) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_CACHE", ROUTE_CACHE) < 0 ||
        PyModule_AddObject(m, "RATE_WINDOW_S", PyFloat_FromDouble(RATE_WINDOW_S)) < 0 ||
        PyModule_AddObject(m, "DECIDE_INTERVAL_S", PyFloat_FromDouble(DECIDE_INTERVAL_S)) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0 || PyModule_AddIntConstant(m, "BATCH", BATCH) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_HISTORY", TWCC_HISTORY) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_COVER_MS", (long)TWCC_COVER_MS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
