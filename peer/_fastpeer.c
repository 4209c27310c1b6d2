/* callsd.peer._fastpeer: the load tool's media engine in C (peer/engine.py, `MediaEngine(media="native")`).
 *
 * Why: the load tool receives seven packets for every one it sends (8-user calls, 2 talkers) and, in Python, paid
 * ~12 µs of its own CPU per packet, so one tool core could not load one server core (issue 13). This module runs the
 * same per-packet rules as the Python engine (MediaEngine._handle and StreamStats.update/sample, Histogram.add),
 * on the same Python objects, so every figure the tool reports means what it meant before:
 *
 * - Receiver.drain(epoll_fd, budget): epoll_wait(0) over every leg's socket, one recvmmsg per ready socket, and
 *   for each SRTP packet of a stream the leg already knows: the RFC 3550 loss/jitter update of its StreamStats,
 *   first-audio time, and 1 in `delay_sample` decrypted (srtp_session.h, libcrypto) for the payload stamp (one-way delay, the
 *   sender's counter). Everything else (STUN, DTLS, a new SSRC, a leg with a foreign SRTP session) comes back as
 *   (leg, datagram) pairs, in arrival order per socket, for the Python engine to handle exactly as before.
 * - send_batch(items): SRTP-protect each (fd, session, plain packet) and send runs of the same socket with one
 *   sendmmsg; the counts of sent, bytes, would-block, refused and protect failures come back as a tuple.
 *
 * The SRTP sessions are this module's own SrtpSession (same policy as the server's native path: srtp_session.h).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "srtp_session.h"
#include "pyslots.h"

#define RX_PER_SOCKET 16 /* datagrams per recvmmsg (one socket) */
#define EVENTS 256       /* ready sockets per epoll_wait */
#define TX_BATCH 64      /* datagrams per sendmmsg (one socket) */
#define SHARED_BATCH 64  /* datagrams per recvmmsg on a shared port (peer/shared_port.py) */
#define PKTINFO_SPACE CMSG_SPACE(sizeof(struct in_pktinfo))

static PyObject *s_rx, *s_streams, *s_first_audio_ns, *s_rx_count, *s_delay, *s_kind, *s_started, *s_base_seq,
    *s_max_seq, *s_cycles, *s_received, *s_jitter, *s_last_transit, *s_clock_khz, *s_sender, *s_first_counter,
    *s_first_index, *s_last_counter, *s_last_index, *s_buckets, *s_count, *s_total, *s_maximum, *s_resolution,
    *s_audio;

static const uint8_t MAGIC[4] = {'C', 'L', 'T', '1'};

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int get_d(PyObject *obj, PyObject *name, double *out) {
    PyObject *v = cs_getattr(obj, name);
    if (v == NULL)
        return -1;
    double x = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int set_d(PyObject *obj, PyObject *name, double value) {
    PyObject *v = PyFloat_FromDouble(value);
    if (v == NULL)
        return -1;
    int rc = cs_setattr(obj, name, v);
    Py_DECREF(v);
    return rc;
}

/* StreamStats.update: RFC 3550 sequence tracking and interarrival jitter. */
static int stream_update(PyObject *st, long long seq, long long rtp_ts, double arrival_ms) {
    double clock_khz, transit;
    if (get_d(st, s_clock_khz, &clock_khz) < 0)
        return -1;
    transit = arrival_ms * clock_khz - (double)rtp_ts;
    int started = get_truth(st, s_started);
    if (started < 0)
        return -1;
    if (!started) {
        if (cs_setattr(st, s_started, Py_True) < 0 || set_ll(st, s_base_seq, seq) < 0 || set_ll(st, s_max_seq, seq) < 0 ||
            set_d(st, s_last_transit, transit) < 0 || set_ll(st, s_received, 1) < 0)
            return -1;
        return 0;
    }
    long long max_seq;
    if (add_ll(st, s_received, 1) < 0 || get_ll(st, s_max_seq, &max_seq) < 0)
        return -1;
    long long delta = (seq - max_seq) & 0xFFFF;
    if (delta > 0 && delta < 0x8000) {
        if (seq < max_seq && add_ll(st, s_cycles, 0x10000) < 0)
            return -1;
        if (set_ll(st, s_max_seq, seq) < 0)
            return -1;
    }
    double last, jitter;
    if (get_d(st, s_last_transit, &last) < 0 || set_d(st, s_last_transit, transit) < 0)
        return -1;
    double d = transit - last;
    if (d < 0)
        d = -d;
    if (d < 60000 * clock_khz) {
        if (get_d(st, s_jitter, &jitter) < 0 || set_d(st, s_jitter, jitter + (d - jitter) / 16.0) < 0)
            return -1;
    }
    return 0;
}

/* Histogram.add */
static int histogram_add(PyObject *h, double value) {
    double resolution, total, maximum;
    if (get_d(h, s_resolution, &resolution) < 0)
        return -1;
    PyObject *buckets = cs_getattr(h, s_buckets);
    if (buckets == NULL)
        return -1;
    if (!PyList_Check(buckets) || PyList_GET_SIZE(buckets) == 0) {
        Py_DECREF(buckets);
        PyErr_SetString(PyExc_TypeError, "Histogram.buckets must be a non-empty list");
        return -1;
    }
    double q = value / resolution;
    Py_ssize_t size = PyList_GET_SIZE(buckets);
    Py_ssize_t index = q < 0 ? 0 : (q >= (double)size ? size - 1 : (Py_ssize_t)q);
    long long c = PyLong_AsLongLong(PyList_GET_ITEM(buckets, index));
    int rc = -1;
    if (c == -1 && PyErr_Occurred())
        goto done;
    PyObject *v = PyLong_FromLongLong(c + 1);
    if (v == NULL || PyList_SetItem(buckets, index, v) < 0)
        goto done;
    if (add_ll(h, s_count, 1) < 0 || get_d(h, s_total, &total) < 0 || set_d(h, s_total, total + value) < 0 ||
        get_d(h, s_maximum, &maximum) < 0)
        goto done;
    if (value > maximum && set_d(h, s_maximum, value) < 0)
        goto done;
    rc = 0;
done:
    Py_DECREF(buckets);
    return rc;
}

/* ---- Receiver --------------------------------------------------------------------------------------------- */

typedef struct {
    long long rx_packets, rx_bytes, rx_rtcp, malformed, refused, srtp_errors;
} rx_delta;

typedef struct {
    PyObject_HEAD
    PyObject *legs;      /* dict fd -> Leg (the engine's) */
    PyObject *histogram; /* the engine's delay Histogram */
    long long delay_sample;
    rx_delta delta;
    struct epoll_event ev[EVENTS];
    struct mmsghdr msg[RX_PER_SOCKET];
    struct iovec iov[RX_PER_SOCKET];
    uint8_t buf[RX_PER_SOCKET][BUF];
    uint8_t plain[BUF];
    /* a shared port: every user's datagrams on one socket, the user told by the destination address */
    struct mmsghdr smsg[SHARED_BATCH];
    struct iovec siov[SHARED_BATCH];
    union {
        char buf[PKTINFO_SPACE];
        struct cmsghdr align;
    } sctl[SHARED_BATCH];
    uint8_t sbuf[SHARED_BATCH][BUF];
} Receiver;

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"legs", "histogram", "delay_sample", NULL};
    PyObject *legs, *histogram;
    long long delay_sample;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OL", kwlist, &PyDict_Type, &legs, &histogram, &delay_sample))
        return -1;
    Py_XSETREF(self->legs, Py_NewRef(legs));
    Py_XSETREF(self->histogram, Py_NewRef(histogram));
    self->delay_sample = delay_sample < 1 ? 1 : delay_sample;
    for (int i = 0; i < RX_PER_SOCKET; i++) {
        self->iov[i].iov_base = self->buf[i];
        self->iov[i].iov_len = BUF;
    }
    return 0;
}

static int Receiver_traverse(Receiver *self, visitproc visit, void *arg) {
    Py_VISIT(self->legs);
    Py_VISIT(self->histogram);
    return 0;
}

static int Receiver_clear(Receiver *self) {
    Py_CLEAR(self->legs);
    Py_CLEAR(self->histogram);
    return 0;
}

static void Receiver_dealloc(Receiver *self) {
    PyObject_GC_UnTrack(self);
    Receiver_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* MediaEngine._sample_delay: decrypt a copy, read the stamp, note the sender's counter and the one-way delay. */
static int sample_delay(Receiver *self, PyObject *leg, PyObject *st, SrtpSession *rx, const uint8_t *d, size_t n,
                        long long now) {
    if (n > MAX_PACKET) {
        self->delta.srtp_errors++;
        return 0;
    }
    memcpy(self->plain, d, n);
    int len = (int)n;
    if (session_unprotect(rx, self->plain, &len) != SRTP_OK) {
        self->delta.srtp_errors++;
        return 0;
    }
    const uint8_t *p = self->plain;
    size_t off = 12 + 4 * (size_t)(p[0] & 0x0F);
    if ((p[0] & 0x10) && (size_t)len >= off + 4)
        off += 4 + 4 * (size_t)((p[off + 2] << 8) | p[off + 3]);
    if ((size_t)len < off + 32 || memcmp(p + off + 12, MAGIC, 4) != 0)
        return 0;
    const uint8_t *s = p + off + 16;
    unsigned long long sent = 0;
    for (int i = 0; i < 8; i++)
        sent = (sent << 8) | s[i];
    long long counter = ((long long)s[8] << 24) | (s[9] << 16) | (s[10] << 8) | s[11];
    long long sender = ((long long)s[12] << 24) | (s[13] << 16) | (s[14] << 8) | s[15];
    long long current, received;
    if (get_ll(st, s_sender, &current) < 0 || get_ll(st, s_received, &received) < 0)
        return -1;
    if (sender != current &&
        (set_ll(st, s_sender, sender) < 0 || set_ll(st, s_first_counter, counter) < 0 ||
         set_ll(st, s_first_index, received) < 0))
        return -1;
    if (set_ll(st, s_last_counter, counter) < 0 || set_ll(st, s_last_index, received) < 0)
        return -1;
    double delay_ms = (double)(now - (long long)sent) / 1e6;
    if (histogram_add(self->histogram, delay_ms) < 0)
        return -1;
    PyObject *acc = PyObject_GetAttr(leg, s_delay);
    if (acc == NULL)
        return -1;
    int rc = -1;
    if (!PyList_Check(acc) || PyList_GET_SIZE(acc) < 3) {
        PyErr_SetString(PyExc_TypeError, "Leg.delay must be a list [sum, count, max]");
        goto done;
    }
    double sum = PyFloat_AsDouble(PyList_GET_ITEM(acc, 0));
    long long count = PyLong_AsLongLong(PyList_GET_ITEM(acc, 1));
    double max = PyFloat_AsDouble(PyList_GET_ITEM(acc, 2));
    if (PyErr_Occurred())
        goto done;
    if (PyList_SetItem(acc, 0, PyFloat_FromDouble(sum + delay_ms)) < 0 ||
        PyList_SetItem(acc, 1, PyLong_FromLongLong(count + 1)) < 0)
        goto done;
    if (delay_ms > max && PyList_SetItem(acc, 2, PyFloat_FromDouble(delay_ms)) < 0)
        goto done;
    rc = 0;
done:
    Py_DECREF(acc);
    return rc;
}

/* One datagram of `leg`: 1 when Python must handle it, 0 when handled here, -1 with an exception set. */
static int receive_one(Receiver *self, PyObject *leg, const uint8_t *d, size_t n) {
    if (n == 0)
        return 0;
    if (d[0] < 128 || d[0] > 191)
        return 1; /* STUN, DTLS */
    if (d[1] >= 192 && d[1] <= 223) {
        self->delta.rx_rtcp++;
        return 0;
    }
    PyObject *rx = PyObject_GetAttr(leg, s_rx);
    if (rx == NULL)
        return -1;
    if (n < 12 || rx == Py_None) {
        Py_DECREF(rx);
        self->delta.malformed++;
        return 0;
    }
    if (Py_TYPE(rx) != &SrtpSessionType) {
        Py_DECREF(rx);
        return 1;
    }
    PyObject *streams = PyObject_GetAttr(leg, s_streams);
    if (streams == NULL || !PyDict_Check(streams)) {
        Py_XDECREF(streams);
        Py_DECREF(rx);
        return streams == NULL ? -1 : 1;
    }
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    PyObject *key = PyLong_FromUnsignedLong(ssrc);
    PyObject *st = key != NULL ? PyDict_GetItemWithError(streams, key) : NULL;
    Py_XDECREF(key);
    Py_XINCREF(st);
    Py_DECREF(streams);
    int rc = -1;
    if (st == NULL) {
        Py_DECREF(rx);
        return PyErr_Occurred() ? -1 : 1; /* a new stream: Python makes its StreamStats */
    }
    self->delta.rx_packets++;
    self->delta.rx_bytes += (long long)n;
    long long now = now_ns();
    long long seq = ((long long)d[2] << 8) | d[3];
    long long ts = ((long long)d[4] << 24) | ((long long)d[5] << 16) | ((long long)d[6] << 8) | d[7];
    if (stream_update(st, seq, ts, (double)now * 1e-6) < 0)
        goto done;
    long long first_audio, rx_count;
    if (get_ll(leg, s_first_audio_ns, &first_audio) < 0)
        goto done;
    if (!first_audio) {
        PyObject *kind = cs_getattr(st, s_kind);
        if (kind == NULL)
            goto done;
        int audio = PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_audio) == 0;
        Py_DECREF(kind);
        if (audio && set_ll(leg, s_first_audio_ns, now) < 0)
            goto done;
    }
    if (get_ll(leg, s_rx_count, &rx_count) < 0 || set_ll(leg, s_rx_count, rx_count + 1) < 0)
        goto done;
    if ((rx_count + 1) % self->delay_sample == 0 && sample_delay(self, leg, st, (SrtpSession *)rx, d, n, now) < 0)
        goto done;
    rc = 0;
done:
    Py_DECREF(st);
    Py_DECREF(rx);
    return rc;
}

static int flush_delta(Receiver *self, PyObject *engine, PyObject *stats) {
    struct {
        PyObject *target;
        const char *name;
        long long *value;
    } rows[] = {
        {engine, "rx_packets", &self->delta.rx_packets}, {engine, "rx_bytes", &self->delta.rx_bytes},
        {engine, "rx_rtcp", &self->delta.rx_rtcp},       {engine, "srtp_errors", &self->delta.srtp_errors},
        {stats, "malformed", &self->delta.malformed},    {stats, "refused", &self->delta.refused},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (*rows[i].value == 0)
            continue;
        PyObject *name = PyUnicode_InternFromString(rows[i].name);
        if (name == NULL || add_ll(rows[i].target, name, *rows[i].value) < 0)
            rc = -1;
        Py_XDECREF(name);
        *rows[i].value = 0;
        if (rc < 0)
            break;
    }
    return rc;
}

static PyObject *Receiver_drain(Receiver *self, PyObject *args) {
    int epfd;
    long long budget;
    PyObject *engine, *stats;
    if (!PyArg_ParseTuple(args, "iLOO", &epfd, &budget, &engine, &stats))
        return NULL;
    PyObject *rest = PyList_New(0);
    if (rest == NULL)
        return NULL;
    long long read = 0;
    int failed = 0;
    while (read < budget && !failed) {
        int ready = epoll_wait(epfd, self->ev, EVENTS, 0);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        long long before = read;
        for (int e = 0; e < ready && !failed; e++) {
            int fd = self->ev[e].data.fd;
            PyObject *key = PyLong_FromLong(fd);
            PyObject *leg = key != NULL ? PyDict_GetItemWithError(self->legs, key) : NULL;
            Py_XDECREF(key);
            if (leg == NULL) {
                if (PyErr_Occurred())
                    failed = 1;
                continue;
            }
            Py_INCREF(leg);
            for (int i = 0; i < RX_PER_SOCKET; i++) {
                memset(&self->msg[i], 0, sizeof self->msg[i]);
                self->msg[i].msg_hdr.msg_iov = &self->iov[i];
                self->msg[i].msg_hdr.msg_iovlen = 1;
            }
            int got = recvmmsg(fd, self->msg, RX_PER_SOCKET, MSG_DONTWAIT, NULL);
            if (got < 0) {
                if (errno == ECONNREFUSED)
                    self->delta.refused++;
                Py_DECREF(leg);
                continue;
            }
            for (int i = 0; i < got && !failed; i++) {
                read++;
                int r = receive_one(self, leg, self->buf[i], self->msg[i].msg_len);
                if (r < 0) {
                    failed = 1;
                } else if (r > 0) {
                    PyObject *item = Py_BuildValue("(Oy#)", leg, (const char *)self->buf[i],
                                                   (Py_ssize_t)self->msg[i].msg_len);
                    if (item == NULL || PyList_Append(rest, item) < 0)
                        failed = 1;
                    Py_XDECREF(item);
                }
            }
            Py_DECREF(leg);
        }
        if (read == before)
            break; /* only sockets of unknown or closed legs were ready */
    }
    if (flush_delta(self, engine, stats) < 0 || failed) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(LO)", read, rest);
    Py_DECREF(rest);
    return out;
}

/* The destination address of a received datagram (host order), 0 when the kernel did not say. */
static uint32_t pktinfo_destination(struct msghdr *m) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            return ntohl(info.ipi_addr.s_addr);
        }
    }
    return 0;
}

static PyObject *Receiver_drain_shared(Receiver *self, PyObject *args) {
    int fd;
    long long budget;
    PyObject *engine, *stats;
    if (!PyArg_ParseTuple(args, "iLOO", &fd, &budget, &engine, &stats))
        return NULL;
    PyObject *rest = PyList_New(0);
    if (rest == NULL)
        return NULL;
    long long read = 0;
    int failed = 0;
    while (read < budget && !failed) {
        for (int i = 0; i < SHARED_BATCH; i++) {
            memset(&self->smsg[i], 0, sizeof self->smsg[i]);
            self->siov[i].iov_base = self->sbuf[i];
            self->siov[i].iov_len = BUF;
            self->smsg[i].msg_hdr.msg_iov = &self->siov[i];
            self->smsg[i].msg_hdr.msg_iovlen = 1;
            self->smsg[i].msg_hdr.msg_control = self->sctl[i].buf;
            self->smsg[i].msg_hdr.msg_controllen = sizeof self->sctl[i].buf;
        }
        int got = recvmmsg(fd, self->smsg, SHARED_BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNREFUSED) {
                self->delta.refused++;
                continue;
            }
            break;
        }
        for (int i = 0; i < got && !failed; i++) {
            read++;
            uint32_t to = pktinfo_destination(&self->smsg[i].msg_hdr);
            if ((to >> 24) != 127)
                continue; /* not for one of our users */
            PyObject *key = PyLong_FromUnsignedLong(to);
            PyObject *leg = key != NULL ? PyDict_GetItemWithError(self->legs, key) : NULL;
            Py_XDECREF(key);
            if (leg == NULL) {
                if (PyErr_Occurred())
                    failed = 1;
                continue;
            }
            Py_INCREF(leg);
            int r = receive_one(self, leg, self->sbuf[i], self->smsg[i].msg_len);
            if (r < 0) {
                failed = 1;
            } else if (r > 0) {
                PyObject *item = Py_BuildValue("(Oy#)", leg, (const char *)self->sbuf[i],
                                               (Py_ssize_t)self->smsg[i].msg_len);
                if (item == NULL || PyList_Append(rest, item) < 0)
                    failed = 1;
                Py_XDECREF(item);
            }
            Py_DECREF(leg);
        }
        if (got < SHARED_BATCH)
            break;
    }
    if (flush_delta(self, engine, stats) < 0 || failed) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(LO)", read, rest);
    Py_DECREF(rest);
    return out;
}

static PyMethodDef Receiver_methods[] = {
    {"drain_shared", (PyCFunction)Receiver_drain_shared, METH_VARARGS,
     "drain_shared(fd, budget, engine, stats) -> (read, [(leg, datagram), ...]): drain a shared port (recvmmsg of "
     "64 with IP_PKTINFO; `legs` is keyed by each user's address as an integer)."},
    {"drain", (PyCFunction)Receiver_drain, METH_VARARGS,
     "drain(epoll_fd, budget, engine, stats) -> (read, [(leg, datagram), ...]): read every ready leg socket "
     "(up to about `budget` datagrams), handle the SRTP packets of known streams, return the rest for Python."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.peer._fastpeer.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Receiver(legs, histogram, delay_sample): the load tool's receive pump (see _fastpeer.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_traverse = (traverseproc)Receiver_traverse,
    .tp_clear = (inquiry)Receiver_clear,
    .tp_methods = Receiver_methods,
};

/* ---- send_batch ------------------------------------------------------------------------------------------- */

static struct mmsghdr tx_msg[TX_BATCH];
static struct iovec tx_iov[TX_BATCH];
static uint8_t tx_buf[TX_BATCH][BUF];

typedef struct {
    long long sent, bytes, would_block, refused, protect_errors;
} tx_counts;

static void tx_flush(int fd, int queued, tx_counts *c) {
    int i = 0;
    while (i < queued) {
        int n = sendmmsg(fd, &tx_msg[i], (unsigned)(queued - i), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                c->would_block++;
            else
                c->refused++;
            i++;
            continue;
        }
        for (int k = i; k < i + n; k++) {
            c->sent++;
            c->bytes += (long long)tx_iov[k].iov_len;
        }
        i += n;
    }
}

static PyObject *send_batch(PyObject *module, PyObject *items) {
    (void)module;
    PyObject *seq = PySequence_Fast(items, "send_batch takes a sequence of (fd, session, packet)");
    if (seq == NULL)
        return NULL;
    tx_counts c = {0, 0, 0, 0, 0};
    int fd = -1, queued = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        int item_fd;
        PyObject *session;
        Py_buffer view;
        if (!PyArg_ParseTuple(item, "iO!y*", &item_fd, &SrtpSessionType, &session, &view)) {
            if (queued)
                tx_flush(fd, queued, &c);
            Py_DECREF(seq);
            return NULL;
        }
        if (queued && (item_fd != fd || queued == TX_BATCH)) {
            tx_flush(fd, queued, &c);
            queued = 0;
        }
        fd = item_fd;
        int len = (int)view.len;
        if (view.len > MAX_PACKET) {
            PyBuffer_Release(&view);
            c.protect_errors++;
            continue;
        }
        memcpy(tx_buf[queued], view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        if (session_protect((SrtpSession *)session, tx_buf[queued], &len) != SRTP_OK) {
            c.protect_errors++;
            continue;
        }
        memset(&tx_msg[queued], 0, sizeof tx_msg[queued]);
        tx_iov[queued].iov_base = tx_buf[queued];
        tx_iov[queued].iov_len = (size_t)len;
        tx_msg[queued].msg_hdr.msg_iov = &tx_iov[queued];
        tx_msg[queued].msg_hdr.msg_iovlen = 1;
        queued++;
    }
    if (queued)
        tx_flush(fd, queued, &c);
    Py_DECREF(seq);
    return Py_BuildValue("(LLLLL)", c.sent, c.bytes, c.would_block, c.refused, c.protect_errors);
}

static struct sockaddr_in tx_to[TX_BATCH];
static union {
    char buf[PKTINFO_SPACE];
    struct cmsghdr align;
} tx_ctl[TX_BATCH];

static PyObject *send_batch_shared(PyObject *module, PyObject *args) {
    (void)module;
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO", &fd, &items))
        return NULL;
    PyObject *seq = PySequence_Fast(items, "send_batch_shared takes a sequence of ((src, dst, port), session, packet)");
    if (seq == NULL)
        return NULL;
    tx_counts c = {0, 0, 0, 0, 0};
    int queued = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        unsigned int src, dst, port;
        PyObject *session;
        Py_buffer view;
        if (!PyArg_ParseTuple(item, "(III)O!y*", &src, &dst, &port, &SrtpSessionType, &session, &view)) {
            if (queued)
                tx_flush(fd, queued, &c);
            Py_DECREF(seq);
            return NULL;
        }
        if (queued == TX_BATCH) {
            tx_flush(fd, queued, &c);
            queued = 0;
        }
        int len = (int)view.len;
        if (view.len > MAX_PACKET) {
            PyBuffer_Release(&view);
            c.protect_errors++;
            continue;
        }
        memcpy(tx_buf[queued], view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        if (session_protect((SrtpSession *)session, tx_buf[queued], &len) != SRTP_OK) {
            c.protect_errors++;
            continue;
        }
        struct msghdr *m = &tx_msg[queued].msg_hdr;
        memset(&tx_msg[queued], 0, sizeof tx_msg[queued]);
        tx_iov[queued].iov_base = tx_buf[queued];
        tx_iov[queued].iov_len = (size_t)len;
        m->msg_iov = &tx_iov[queued];
        m->msg_iovlen = 1;
        memset(&tx_to[queued], 0, sizeof tx_to[queued]);
        tx_to[queued].sin_family = AF_INET;
        tx_to[queued].sin_addr.s_addr = htonl(dst);
        tx_to[queued].sin_port = htons((uint16_t)port);
        m->msg_name = &tx_to[queued];
        m->msg_namelen = sizeof tx_to[queued];
        m->msg_control = tx_ctl[queued].buf;
        m->msg_controllen = sizeof tx_ctl[queued].buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(m);
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo info;
        memset(&info, 0, sizeof info);
        info.ipi_spec_dst.s_addr = htonl(src);
        memcpy(CMSG_DATA(cm), &info, sizeof info);
        queued++;
    }
    if (queued)
        tx_flush(fd, queued, &c);
    Py_DECREF(seq);
    return Py_BuildValue("(LLLLL)", c.sent, c.bytes, c.would_block, c.refused, c.protect_errors);
}

/* ---- module --------------------------------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"send_batch_shared", (PyCFunction)send_batch_shared, METH_VARARGS,
     "send_batch_shared(fd, [((src, dst, port), session, plain RTP), ...]) -> counts as send_batch: protect and "
     "send from each user's own loopback address (IP_PKTINFO) on one shared socket, 64 per sendmmsg."},
    {"send_batch", (PyCFunction)send_batch, METH_O,
     "send_batch([(fd, session, plain RTP), ...]) -> (sent, bytes, would_block, refused, protect_errors): protect "
     "each packet and send the runs of one socket with sendmmsg (connected sockets)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpeer_module = {
    PyModuleDef_HEAD_INIT, "_fastpeer", "The load tool's native media engine (see _fastpeer.c).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

#define INTERN(var, text)                                                                                       \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return NULL;

PyMODINIT_FUNC PyInit__fastpeer(void) {
    INTERN(s_rx, "rx") INTERN(s_streams, "streams") INTERN(s_first_audio_ns, "first_audio_ns")
    INTERN(s_rx_count, "rx_count") INTERN(s_delay, "delay") INTERN(s_kind, "kind") INTERN(s_started, "started")
    INTERN(s_base_seq, "base_seq") INTERN(s_max_seq, "max_seq") INTERN(s_cycles, "cycles")
    INTERN(s_received, "received") INTERN(s_jitter, "jitter") INTERN(s_last_transit, "last_transit")
    INTERN(s_clock_khz, "clock_khz") INTERN(s_sender, "sender") INTERN(s_first_counter, "first_counter")
    INTERN(s_first_index, "first_index") INTERN(s_last_counter, "last_counter") INTERN(s_last_index, "last_index")
    INTERN(s_buckets, "buckets") INTERN(s_count, "count") INTERN(s_total, "total") INTERN(s_maximum, "maximum")
    INTERN(s_resolution, "resolution") INTERN(s_audio, "audio")
    if (srtp_keys_global_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libcrypto offers no HMAC");
        return NULL;
    }
    SrtpSessionType.tp_name = "callsd.peer._fastpeer.SrtpSession";
    if (PyType_Ready(&SrtpSessionType) < 0 || PyType_Ready(&ReceiverType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpeer_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SrtpSession", (PyObject *)&SrtpSessionType) < 0 ||
        PyModule_AddObjectRef(m, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
