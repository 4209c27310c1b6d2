/* The load tool's send tick in C: packets built from each source's templates, SRTP-protected and sent in batches.
 * Included once, by _fastpeer.c.
 *
 * Why: building every packet in Python (Source.packets: struct.pack_into of the header and stamp, a bytes copy)
 * was ~5 µs of the ~7 µs the tool spent per sent packet (issue 13). `Sender.tick(legs, now_ns, owed, shared_fd)` runs
 * MediaEngine._send_tick_python's rules on the legs it is given (the engine's legs with sources): a leg that is
 * not connected stops its sources (Source.stop); each enabled source of a connected leg emits what `Source.packets` would (audio: one packet per
 * tick; video: a frame of MTU-sized packets every `frame_ticks` ticks, VP8 descriptor and marker bits), `owed` times.
 * The per-packet state (sequence, timestamp, counter, frame position) lives here while a source sends, starting from
 * the Source object's values (and the counter jump a stopped source owes, Source.resume's rule), and is written back
 * by `sync()` and when the source stops sending. A source's templates are reloaded when `configure` gave it a new
 * buffer list.
 *
 * Sending: the queue (64 datagrams) leaves with one sendmmsg per socket (a socket per user) or per 64 (a shared
 * port: each datagram from its user's address, IP_PKTINFO). Where consecutive datagrams go the same way with the
 * same size (a video frame; several audio ticks owed at once) they leave as one UDP GSO send (UDP_SEGMENT): the
 * kernel's per-datagram cost is most of what is left per sent packet. CALLSD_NATIVE_GSO=0 turns it off; a kernel
 * that refuses it turns it off for the process, and those datagrams go one by one.
 */
#ifndef CALLSD_FASTPEER_SEND_H
#define CALLSD_FASTPEER_SEND_H

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fastpeer_stats.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define TX_BATCH 64
#define GSO_MAX_BYTES 65000
#define TICK_S 0.020
#define TX_CONTROL (CMSG_SPACE(sizeof(struct in_pktinfo)) + CMSG_SPACE(sizeof(uint16_t)))

static PyObject *s_state, *s_tx, *s_sources, *s_enabled, *s_stopped_ns, *s_started_ns, *s_seq, *s_ts, *s_counter,
    *s_tick_in_frame, *s_frames, *s_stop, *s_connected, *s_offset, *s_pt, *s_ssrc, *s_source_id, *s_ts_step,
    *s_packets_per_tick, *s_frame_ticks, *s_sock, *s_route, *s_buffers;

typedef struct {
    int fd;            /* the leg's socket, or the shared port */
    uint32_t src, dst; /* shared port: the user's address and the server's (host order); 0 with a socket per user */
    uint16_t port;
} tx_route;

typedef struct {
    PyObject *source, *leg, *tx, *buffers; /* strong: the Source, the leg it sends on, its session, its templates */
    tx_route route;
    int audio, n, size, offset, packets_per_tick, frame_ticks, tick_in_frame;
    uint8_t pt;
    uint32_t seq, ts, ts_step, ssrc, source_id;
    long long counter, frames;
    uint8_t *templates; /* n * size bytes */
    unsigned long long seen;
} tx_source;

typedef struct {
    long long sent, bytes, would_block, refused, protect_errors;
} tx_counts;

typedef struct {
    PyObject_HEAD
    tx_source *sources;
    size_t n_sources, cap_sources;
    key_index ix; /* Source object's address -> index */
    unsigned long long ticks;
    int gso;
    int queued;
    tx_route route[TX_BATCH];
    size_t len[TX_BATCH];
    uint8_t buf[TX_BATCH][BUF];
    struct mmsghdr msg[TX_BATCH];
    struct iovec iov[TX_BATCH];
    struct sockaddr_in to[TX_BATCH];
    int segments[TX_BATCH];
    union {
        char buf[TX_CONTROL];
        struct cmsghdr align;
    } control[TX_BATCH];
} Sender;

/* -- the queue ---------------------------------------------------------------------------------------------- */

static int same_route(const tx_route *a, const tx_route *b) {
    return a->fd == b->fd && a->src == b->src && a->dst == b->dst && a->port == b->port;
}

/* One message: datagrams [first, first + k) of the queue, one GSO send when k > 1. */
static void tx_message(Sender *self, int out, int first, int k) {
    struct msghdr *m = &self->msg[out].msg_hdr;
    memset(&self->msg[out], 0, sizeof self->msg[out]);
    m->msg_iov = &self->iov[first];
    m->msg_iovlen = (size_t)k;
    const tx_route *r = &self->route[first];
    size_t control = 0;
    if (r->dst) {
        struct sockaddr_in *to = &self->to[out];
        memset(to, 0, sizeof *to);
        to->sin_family = AF_INET;
        to->sin_addr.s_addr = htonl(r->dst);
        to->sin_port = htons(r->port);
        m->msg_name = to;
        m->msg_namelen = sizeof *to;
    }
    m->msg_control = self->control[out].buf;
    m->msg_controllen = TX_CONTROL;
    struct cmsghdr *cm = CMSG_FIRSTHDR(m);
    if (r->src) {
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo info;
        memset(&info, 0, sizeof info);
        info.ipi_spec_dst.s_addr = htonl(r->src);
        memcpy(CMSG_DATA(cm), &info, sizeof info);
        control += CMSG_SPACE(sizeof info);
        cm = CMSG_NXTHDR(m, cm);
    }
    if (k > 1) {
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t segment = (uint16_t)self->len[first];
        memcpy(CMSG_DATA(cm), &segment, sizeof segment);
        control += CMSG_SPACE(sizeof segment);
    }
    m->msg_controllen = control;
    if (control == 0)
        m->msg_control = NULL;
    self->segments[out] = k;
}

/* Send the queue (every datagram on one socket) and empty it. */
static void tx_flush(Sender *self, tx_counts *c) {
    int n = self->queued, out = 0;
    self->queued = 0;
    if (n == 0)
        return;
    for (int i = 0; i < n; i++) {
        self->iov[i].iov_base = self->buf[i];
        self->iov[i].iov_len = self->len[i];
    }
    for (int i = 0; i < n;) {
        int k = 1;
        while (self->gso && i + k < n && same_route(&self->route[i], &self->route[i + k]) &&
               self->len[i + k] == self->len[i] && (size_t)(k + 1) * self->len[i] <= GSO_MAX_BYTES)
            k++;
        tx_message(self, out++, i, k);
        i += k;
    }
    int fd = self->route[0].fd;
    for (int i = 0; i < out;) {
        int sent = sendmmsg(fd, &self->msg[i], (unsigned)(out - i), MSG_DONTWAIT);
        if (sent >= 0) {
            for (int m = i; m < i + sent; m++) {
                c->sent += self->segments[m];
                for (size_t v = 0; v < self->msg[m].msg_hdr.msg_iovlen; v++)
                    c->bytes += (long long)self->msg[m].msg_hdr.msg_iov[v].iov_len;
            }
            i += sent;
            continue;
        }
        if (errno == EINTR)
            continue;
        int k = self->segments[i];
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->would_block += k;
        } else if (k > 1) { /* the kernel refused segmentation: these datagrams one by one, no GSO from now on */
            self->gso = 0;
            struct msghdr one = self->msg[i].msg_hdr;
            struct iovec *iov = one.msg_iov;
            one.msg_iovlen = 1;
            one.msg_controllen = self->route[0].src ? CMSG_SPACE(sizeof(struct in_pktinfo)) : 0;
            if (one.msg_controllen == 0)
                one.msg_control = NULL;
            for (int s = 0; s < k; s++) {
                one.msg_iov = &iov[s];
                if (sendmsg(fd, &one, MSG_DONTWAIT) >= 0) {
                    c->sent++;
                    c->bytes += (long long)iov[s].iov_len;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->would_block++;
                } else {
                    c->refused++;
                }
            }
        } else {
            c->refused += k;
        }
        i++;
    }
}

/* Protect the plain packet in the next queue slot (the caller made room: `tx_room`) and queue it for `route`. */
static void tx_queue(Sender *self, const tx_route *route, SrtpSession *tx, int len, tx_counts *c) {
    int q = self->queued;
    if (session_protect(tx, self->buf[q], &len) != SRTP_OK) {
        c->protect_errors++;
        return;
    }
    self->route[q] = *route;
    self->len[q] = (size_t)len;
    self->queued++;
}

/* -- one source --------------------------------------------------------------------------------------------- */

static int get_i(PyObject *obj, PyObject *name, int *out) {
    long long v;
    if (get_ll(obj, name, &v) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

static int get_u32(PyObject *obj, PyObject *name, uint32_t *out) {
    long long v;
    if (get_ll(obj, name, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* The templates and fixed fields of a source (again after `configure` gave it a new buffer list). */
static int source_load(tx_source *e, PyObject *buffers) {
    Py_ssize_t n = PyList_Check(buffers) ? PyList_GET_SIZE(buffers) : 0;
    PyObject *kind = cs_getattr(e->source, s_kind);
    if (kind == NULL)
        return -1;
    e->audio = PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_audio) == 0;
    Py_DECREF(kind);
    long long pt;
    if (n <= 0 || get_i(e->source, s_offset, &e->offset) < 0 || get_ll(e->source, s_pt, &pt) < 0 ||
        get_u32(e->source, s_ssrc, &e->ssrc) < 0 || get_u32(e->source, s_source_id, &e->source_id) < 0 ||
        get_u32(e->source, s_ts_step, &e->ts_step) < 0 || get_i(e->source, s_frame_ticks, &e->frame_ticks) < 0 ||
        get_i(e->source, s_packets_per_tick, &e->packets_per_tick) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "Source.buffers must be a non-empty list");
        return -1;
    }
    e->pt = (uint8_t)(pt & 0x7F);
    Py_ssize_t size = PyByteArray_Check(PyList_GET_ITEM(buffers, 0)) ? PyByteArray_GET_SIZE(PyList_GET_ITEM(buffers, 0)) : -1;
    if (size < e->offset + 32 || size > MAX_PACKET || e->frame_ticks < 1) {
        PyErr_SetString(PyExc_ValueError, "a Source template must be a bytearray of 32 bytes past its header, "
                                          "at most MAX_PACKET, and frame_ticks >= 1");
        return -1;
    }
    uint8_t *templates = malloc((size_t)(n * size));
    if (templates == NULL)
        return PyErr_NoMemory(), -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyList_GET_ITEM(buffers, i);
        if (!PyByteArray_Check(b) || PyByteArray_GET_SIZE(b) != size) {
            free(templates);
            PyErr_SetString(PyExc_ValueError, "a Source's templates must be bytearrays of one size");
            return -1;
        }
        memcpy(templates + i * size, PyByteArray_AS_STRING(b), (size_t)size);
    }
    free(e->templates);
    e->templates = templates;
    e->n = (int)n;
    e->size = (int)size;
    Py_XSETREF(e->buffers, Py_NewRef(buffers));
    return 0;
}

static int source_write(tx_source *e) {
    PyObject *s = e->source;
    return set_ll(s, s_seq, e->seq) < 0 || set_ll(s, s_ts, e->ts) < 0 || set_ll(s, s_counter, e->counter) < 0 ||
                   set_ll(s, s_tick_in_frame, e->tick_in_frame) < 0 || set_ll(s, s_frames, e->frames) < 0
               ? -1
               : 0;
}

static void source_clear(tx_source *e) {
    Py_CLEAR(e->source);
    Py_CLEAR(e->leg);
    Py_CLEAR(e->tx);
    Py_CLEAR(e->buffers);
    free(e->templates);
    e->templates = NULL;
}

/* Source.resume: after its leg could not send, the stamp counter jumps by what was owed (round half to even, as
 * Python's round), so receivers count the gap as lost. */
static int source_resume(tx_source *e, long long now_ns) {
    long long stopped;
    if (get_ll(e->source, s_stopped_ns, &stopped) < 0)
        return -1;
    if (!stopped)
        return 0;
    double rate = (double)e->packets_per_tick / (e->frame_ticks * TICK_S);
    double owed = nearbyint((double)(now_ns - stopped) / 1e9 * rate);
    if (owed > 0)
        e->counter += (long long)owed;
    return set_ll(e->source, s_stopped_ns, 0);
}

/* Source.packets for one tick: the due packets, protected and queued. */
static void source_emit(Sender *self, tx_source *e, long long now_ns, tx_counts *c) {
    int tick = e->tick_in_frame;
    e->tick_in_frame = (tick + 1) % e->frame_ticks;
    if (tick != 0)
        return;
    int keyframe = e->frames % 20 == 0, off = e->offset;
    for (int i = 0; i < e->n; i++) {
        if (self->queued && (self->queued == TX_BATCH || self->route[0].fd != e->route.fd))
            tx_flush(self, c); /* make room: one socket per sendmmsg */
        uint8_t *b = self->buf[self->queued];
        memcpy(b, e->templates + (size_t)i * (size_t)e->size, (size_t)e->size);
        e->seq = (e->seq + 1) & 0xFFFF;
        e->counter++;
        uint32_t counter = (uint32_t)e->counter;
        b[2] = (uint8_t)(e->seq >> 8), b[3] = (uint8_t)e->seq;
        for (int k = 0; k < 4; k++) {
            b[4 + k] = (uint8_t)(e->ts >> (24 - 8 * k));
            b[8 + k] = (uint8_t)(e->ssrc >> (24 - 8 * k));
            b[off + 24 + k] = (uint8_t)(counter >> (24 - 8 * k));
            b[off + 28 + k] = (uint8_t)(e->source_id >> (24 - 8 * k));
        }
        for (int k = 0; k < 8; k++)
            b[off + 16 + k] = (uint8_t)((unsigned long long)now_ns >> (56 - 8 * k));
        if (e->audio) {
            b[1] = e->pt | (e->counter == 1 ? 0x80 : 0);
        } else {
            b[1] = e->pt | (i == e->n - 1 ? 0x80 : 0);    /* marker: the frame's last packet */
            b[off] = i == 0 ? 0x10 : 0x00;                  /* VP8 payload descriptor: S on the first */
            b[off + 1] = i == 0 ? (keyframe ? 0x10 : 0x11) : 0x00; /* VP8 frame tag: key / inter */
        }
        tx_queue(self, &e->route, (SrtpSession *)e->tx, e->size, c);
    }
    e->frames++;
    e->ts = e->ts + e->ts_step;
}

/* -- the Sender type ------------------------------------------------------------------------------------------ */

static int32_t sender_find(Sender *self, PyObject *source) {
    return index_get(&self->ix, (uint64_t)(uintptr_t)source);
}

static int sender_reindex(Sender *self) {
    if (index_reset(&self->ix, self->n_sources) < 0)
        return -1;
    for (size_t i = 0; i < self->n_sources; i++)
        index_put(&self->ix, (uint64_t)(uintptr_t)self->sources[i].source, (int32_t)i);
    return 0;
}

/* Write a source's state back and drop it (its leg stopped sending, left, or it moved to another leg). */
static int sender_drop(Sender *self, int32_t at) {
    tx_source *e = &self->sources[at];
    int rc = source_write(e);
    source_clear(e);
    self->sources[at] = self->sources[--self->n_sources];
    return sender_reindex(self) < 0 ? -1 : rc;
}

/* A source starting to send on `leg`: its state from the Source object (resumed), its route, its templates. */
static int32_t sender_add(Sender *self, PyObject *source, PyObject *leg, PyObject *tx, const tx_route *route,
                          PyObject *buffers, long long now_ns) {
    if (grow((void **)&self->sources, &self->cap_sources, self->n_sources + 1, sizeof *self->sources) < 0)
        return -1;
    tx_source *e = &self->sources[self->n_sources];
    memset(e, 0, sizeof *e);
    e->source = Py_NewRef(source);
    e->leg = Py_NewRef(leg);
    e->tx = Py_NewRef(tx);
    e->route = *route;
    long long started;
    if (source_load(e, buffers) < 0 || get_u32(source, s_seq, &e->seq) < 0 || get_u32(source, s_ts, &e->ts) < 0 ||
        get_ll(source, s_counter, &e->counter) < 0 || get_i(source, s_tick_in_frame, &e->tick_in_frame) < 0 ||
        get_ll(source, s_frames, &e->frames) < 0 || get_ll(source, s_started_ns, &started) < 0 ||
        (!started && set_ll(source, s_started_ns, now_ns) < 0)) {
        source_clear(e);
        return -1;
    }
    int32_t at = (int32_t)self->n_sources++;
    if (2 * (self->n_sources + 1) > self->ix.mask + 1)
        return sender_reindex(self) < 0 ? -1 : at;
    index_put(&self->ix, (uint64_t)(uintptr_t)source, at);
    return at;
}

/* The route of a leg's datagrams: its own socket (the dict key), or its addresses on the shared port. */
static int leg_route(PyObject *leg, PyObject *key, int shared_fd, tx_route *route) {
    memset(route, 0, sizeof *route);
    if (shared_fd < 0) {
        route->fd = (int)PyLong_AsLong(key);
        return route->fd == -1 && PyErr_Occurred() ? -1 : 0;
    }
    route->fd = shared_fd;
    PyObject *sock = PyObject_GetAttr(leg, s_sock);
    PyObject *r = sock != NULL ? cs_getattr(sock, s_route) : NULL;
    Py_XDECREF(sock);
    if (r == NULL)
        return -1;
    unsigned int src, dst, port;
    int ok = PyArg_ParseTuple(r, "III", &src, &dst, &port);
    Py_DECREF(r);
    if (!ok)
        return -1;
    route->src = src, route->dst = dst, route->port = (uint16_t)port;
    return 0;
}

/* An attribute of a Leg (a plain instance attribute, in its __dict__): the dict lookup alone when no data
 * descriptor of its class could take precedence, PyObject_GetAttr otherwise. Every sending leg is visited every
 * tick; the generic call was most of the tick's cost per sent packet. */
static PyObject *leg_attr(PyObject *leg, PyObject *name) {
    PyObject *descr = _PyType_Lookup(Py_TYPE(leg), name); /* borrowed; cached by the type's version */
    if (Py_TYPE(leg)->tp_getattro == PyObject_GenericGetAttr &&
        (descr == NULL || Py_TYPE(descr)->tp_descr_set == NULL)) {
        PyObject **dict = _PyObject_GetDictPtr(leg);
        if (dict != NULL && *dict != NULL) {
            PyObject *v = PyDict_GetItemWithError(*dict, name);
            if (v != NULL)
                return Py_NewRef(v);
            if (PyErr_Occurred())
                return NULL;
        }
    }
    return PyObject_GetAttr(leg, name);
}

/* One leg's part of the tick: 0, or -1 with an exception set. */
static int sender_leg(Sender *self, PyObject *key, PyObject *leg, long long now_ns, int owed, int shared_fd,
                      PyObject *now, tx_counts *c) {
    PyObject *sources = leg_attr(leg, s_sources);
    if (sources == NULL)
        return -1;
    if (!PyList_Check(sources) || PyList_GET_SIZE(sources) == 0) { /* a listener: nothing to send or stop */
        int list = PyList_Check(sources);
        Py_DECREF(sources);
        if (!list)
            PyErr_SetString(PyExc_TypeError, "Leg._sources must be a list (its SourceList)");
        return list ? 0 : -1;
    }
    PyObject *state = leg_attr(leg, s_state);
    PyObject *tx = state != NULL ? leg_attr(leg, s_tx) : NULL;
    int rc = -1;
    if (tx == NULL)
        goto done;
    int connected = state == s_connected || (PyUnicode_Check(state) && PyUnicode_Compare(state, s_connected) == 0);
    connected = connected && tx != Py_None;
    if (connected && Py_TYPE(tx) != &SrtpSessionType) {
        PyErr_SetString(PyExc_TypeError, "the native send tick needs the leg's native SRTP session");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sources); i++) {
        PyObject *source = PyList_GET_ITEM(sources, i);
        int32_t at = sender_find(self, source);
        if (at >= 0 && (!connected || self->sources[at].leg != leg)) {
            if (sender_drop(self, at) < 0)
                goto done;
            at = -1;
        }
        if (!connected) {
            PyObject *r = PyObject_CallMethodOneArg(source, s_stop, now);
            if (r == NULL)
                goto done;
            Py_DECREF(r);
            continue;
        }
        if (at >= 0)
            self->sources[at].seen = self->ticks;
        int enabled = get_truth(source, s_enabled);
        if (enabled <= 0) {
            if (enabled < 0)
                goto done;
            continue;
        }
        PyObject *buffers = cs_getattr(source, s_buffers);
        if (buffers == NULL)
            goto done;
        if (!PyList_Check(buffers) || PyList_GET_SIZE(buffers) == 0) {
            Py_DECREF(buffers);
            continue;
        }
        if (at < 0) {
            tx_route route;
            if (leg_route(leg, key, shared_fd, &route) < 0 ||
                (at = sender_add(self, source, leg, tx, &route, buffers, now_ns)) < 0) {
                Py_DECREF(buffers);
                goto done;
            }
        }
        tx_source *e = &self->sources[at];
        e->seen = self->ticks;
        int reload = buffers != e->buffers ? source_load(e, buffers) : 0;
        Py_DECREF(buffers);
        if (reload < 0 || source_resume(e, now_ns) < 0)
            goto done;
        for (int k = 0; k < owed; k++)
            source_emit(self, e, now_ns, c);
    }
    rc = 0;
done:
    Py_XDECREF(state);
    Py_XDECREF(tx);
    Py_DECREF(sources);
    return rc;
}

static PyObject *Sender_tick(Sender *self, PyObject *args) {
    PyObject *legs;
    long long now_ns;
    int owed, shared_fd;
    if (!PyArg_ParseTuple(args, "O!Lii", &PyDict_Type, &legs, &now_ns, &owed, &shared_fd))
        return NULL;
    PyObject *now = PyLong_FromLongLong(now_ns);
    if (now == NULL)
        return NULL;
    tx_counts c = {0, 0, 0, 0, 0};
    self->ticks++;
    /* The only Python code run on the way is Source.stop, which does not touch the engine's legs; the size check
     * catches anything that would (a copy of the items per tick cost a fifth of the tick). */
    Py_ssize_t pos = 0, size = PyDict_GET_SIZE(legs);
    PyObject *key, *leg;
    int failed = 0;
    while (!failed && PyDict_Next(legs, &pos, &key, &leg)) {
        Py_INCREF(key);
        Py_INCREF(leg);
        failed = sender_leg(self, key, leg, now_ns, owed, shared_fd, now, &c) < 0;
        Py_DECREF(key);
        Py_DECREF(leg);
        if (!failed && PyDict_GET_SIZE(legs) != size) {
            PyErr_SetString(PyExc_RuntimeError, "the engine's legs changed during a send tick");
            failed = 1;
        }
    }
    tx_flush(self, &c);
    Py_DECREF(now);
    /* sources not met this tick (their leg left the engine, or they left their leg): written back, dropped */
    for (size_t i = 0; !failed && i < self->n_sources;) {
        if (self->sources[i].seen != self->ticks)
            failed = sender_drop(self, (int32_t)i) < 0;
        else
            i++;
    }
    if (failed)
        return NULL;
    return Py_BuildValue("(LLLLL)", c.sent, c.bytes, c.would_block, c.refused, c.protect_errors);
}

static PyObject *Sender_sync(Sender *self, PyObject *unused) {
    (void)unused;
    for (size_t i = 0; i < self->n_sources; i++)
        if (source_write(&self->sources[i]) < 0)
            return NULL;
    Py_RETURN_NONE;
}

static int Sender_init(Sender *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"gso", NULL};
    int gso = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", kwlist, &gso))
        return -1;
    self->gso = gso;
    return self->ix.at == NULL ? index_reset(&self->ix, 0) : 0;
}

static int Sender_traverse(Sender *self, visitproc visit, void *arg) {
    for (size_t i = 0; i < self->n_sources; i++) {
        Py_VISIT(self->sources[i].source);
        Py_VISIT(self->sources[i].leg);
        Py_VISIT(self->sources[i].tx);
        Py_VISIT(self->sources[i].buffers);
    }
    return 0;
}

static int Sender_clear(Sender *self) {
    for (size_t i = 0; i < self->n_sources; i++)
        source_clear(&self->sources[i]);
    self->n_sources = 0;
    return 0;
}

static void Sender_dealloc(Sender *self) {
    PyObject_GC_UnTrack(self);
    Sender_clear(self);
    free(self->sources);
    index_free(&self->ix);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Sender_get_gso(Sender *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->gso);
}

static PyMethodDef Sender_methods[] = {
    {"tick", (PyCFunction)Sender_tick, METH_VARARGS,
     "tick(legs, now_ns, owed, shared_fd) -> (sent, bytes, would_block, refused, protect_errors): one send tick "
     "over the engine's legs ({key: Leg}); shared_fd -1 for a socket per user."},
    {"sync", (PyCFunction)Sender_sync, METH_NOARGS,
     "sync(): write each sending source's sequence, timestamp, counter and frame position into its Source."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Sender_getset[] = {
    {"gso", (getter)Sender_get_gso, NULL, "whether runs of equal datagrams leave as UDP GSO sends", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.peer._fastpeer.Sender",
    .tp_basicsize = sizeof(Sender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Sender(gso=True): the load tool's send tick (see fastpeer_send.h).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sender_init,
    .tp_dealloc = (destructor)Sender_dealloc,
    .tp_traverse = (traverseproc)Sender_traverse,
    .tp_clear = (inquiry)Sender_clear,
    .tp_methods = Sender_methods,
    .tp_getset = Sender_getset,
};

#endif
