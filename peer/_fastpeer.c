/* callsd.peer._fastpeer: the load tool's media engine in C (peer/engine.py, `MediaEngine(media="native"|"shared")`).
 *
 * Why: the load tool receives seven packets for every one it sends (8-user calls, 2 talkers) and, in Python, paid
 * ~12 µs of its own CPU per packet, so one tool core could not load one server core (issue 13). Here Python runs per
 * batch and per report interval, not per packet:
 *
 * - Receiver.drain(epoll_fd, budget, engine, stats) / drain_shared(fd, ...): recvmmsg per ready socket (or 64 at a
 *   time on a shared port), and for each SRTP packet of a stream Python has tracked: the RFC 3550 loss/jitter
 *   update, first-audio time, and 1 in `delay_sample` decrypted (srtp_session.h, libcrypto; counted in the engine's
 *   `rx_verified`, the others are counted from their RTP header and arrival alone) for the payload stamp
 *   (one-way delay, the sender's counter), all in C structs (fastpeer_stats.h). A packet's arrival is the kernel's
 *   receive timestamp (SO_TIMESTAMPNS), so the loop's wait between drains is in neither the delay nor the jitter.
 *   Everything else (STUN, DTLS, the first packet of a new SSRC, a leg with a foreign SRTP session) comes back as
 *   (leg, datagram, arrival_ns) in arrival order; once one of a leg's RTP packets went back, the rest of that leg's
 *   packets in the drain go back too, so each leg's packets are counted in arrival order. Python tracks a new
 *   stream (`track`) and hands its packet back (`receive`).
 *   `sync()` writes the counters into the StreamStats, Leg and Histogram objects (the engine calls it before it
 *   reads them); `forget(key)` does so and drops a leg that leaves.
 * - Sender.tick(legs, now_ns, owed, shared_fd): the 20 ms send tick, packets built from the sources' templates,
 *   protected and sent in batches (fastpeer_send.h).
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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "srtp_session.h"
#include "pyslots.h"
#include "fastpeer_stats.h"
#include "fastpeer_send.h"

#define RX_PER_SOCKET 16 /* datagrams per recvmmsg (one socket) */
#define EVENTS 256       /* ready sockets per epoll_wait */
#define SHARED_BATCH 64  /* datagrams per recvmmsg on a shared port (peer/shared_port.py) */
#define PKTINFO_SPACE CMSG_SPACE(sizeof(struct in_pktinfo))
#define STAMP_SPACE CMSG_SPACE(sizeof(struct timespec)) /* SCM_TIMESTAMPNS */

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* CLOCK_MONOTONIC minus CLOCK_REALTIME, now: what turns the kernel's receive timestamps (SO_TIMESTAMPNS, wall
 * clock) into the monotonic nanoseconds the senders stamp (peer/source.py). Taken once per drain. */
static long long monotonic_minus_realtime(void) {
    struct timespec real;
    long long mono = now_ns();
    clock_gettime(CLOCK_REALTIME, &real);
    return mono - ((long long)real.tv_sec * 1000000000LL + real.tv_nsec);
}

/* A datagram's arrival on the monotonic clock: the kernel's receive timestamp when its socket has SO_TIMESTAMPNS
 * (peer/engine.py sets it on the native engines' sockets), else `read_ns`, when it was read. Why: the receive loop
 * waits a while between drains to read bigger batches (fewer wake-ups per packet); with the kernel's time that wait
 * is not added to the one-way delay and jitter it measures. Never later than `read_ns` (a wall-clock step). */
static long long arrival_ns(struct msghdr *m, long long offset, long long read_ns) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec t;
            memcpy(&t, CMSG_DATA(c), sizeof t);
            long long at = (long long)t.tv_sec * 1000000000LL + t.tv_nsec + offset;
            return at < read_ns ? at : read_ns;
        }
    }
    return read_ns;
}

/* ---- Receiver --------------------------------------------------------------------------------------------- */

typedef struct {
    long long rx_packets, rx_bytes, rx_rtcp, rx_verified, malformed, refused, srtp_errors;
} rx_delta;

typedef struct {
    PyObject_HEAD
    PyObject *legs;      /* dict key -> Leg (the engine's) */
    PyObject *histogram; /* the engine's delay Histogram */
    long long delay_sample;
    unsigned long long drains;
    rx_tables t;
    rx_delta delta;
    struct epoll_event ev[EVENTS];
    struct mmsghdr msg[RX_PER_SOCKET];
    struct iovec iov[RX_PER_SOCKET];
    union {
        char buf[STAMP_SPACE];
        struct cmsghdr align;
    } ctl[RX_PER_SOCKET];
    uint8_t buf[RX_PER_SOCKET][BUF];
    uint8_t plain[BUF];
    /* a shared port: every user's datagrams on one socket, the user told by the destination address */
    struct mmsghdr smsg[SHARED_BATCH];
    struct iovec siov[SHARED_BATCH];
    union {
        char buf[PKTINFO_SPACE + STAMP_SPACE];
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
    if (self->histogram != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is initialised once");
        return -1;
    }
    if (tables_init(&self->t, histogram) < 0)
        return -1;
    self->legs = Py_NewRef(legs);
    self->histogram = Py_NewRef(histogram);
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
    return tables_traverse(&self->t, visit, arg);
}

static int Receiver_clear(Receiver *self) {
    Py_CLEAR(self->legs);
    Py_CLEAR(self->histogram);
    tables_free(&self->t);
    return 0;
}

static void Receiver_dealloc(Receiver *self) {
    PyObject_GC_UnTrack(self);
    Receiver_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An SRTP packet of a tracked stream: MediaEngine._handle's accounting, in C. */
static void receive_known(Receiver *self, int32_t at, const uint8_t *d, size_t n, long long now) {
    rx_stream *s = &self->t.streams[at];
    rx_leg *l = &self->t.legs[s->leg];
    self->delta.rx_packets++;
    self->delta.rx_bytes += (long long)n;
    long long seq = ((long long)d[2] << 8) | d[3];
    long long ts = ((long long)d[4] << 24) | ((long long)d[5] << 16) | ((long long)d[6] << 8) | d[7];
    stream_update(s, seq, ts, (double)now * 1e-6);
    if (!l->first_audio_ns && s->audio)
        l->first_audio_ns = now;
    l->rx_count++;
    l->dirty = 1;
    if (l->rx_count % self->delay_sample == 0) {
        if (sample_delay(&self->t, l, s, d, n, now, self->plain))
            self->delta.srtp_errors++;
        else
            self->delta.rx_verified++;
    }
}

/* The tracked stream of an RTP datagram of leg `key` that C may count now (-1: Python's, or not media). */
static int32_t known_stream(Receiver *self, uint32_t key, const uint8_t *d, size_t n) {
    if (n < 12 || d[0] < 128 || d[0] > 191 || (d[1] >= 192 && d[1] <= 223))
        return -1;
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    int32_t at = index_get(&self->t.stream_ix, stream_key(key, ssrc));
    if (at < 0 || self->t.legs[self->t.streams[at].leg].deferred == self->drains)
        return -1;
    return at;
}

/* Any other datagram of `leg`: 1 when Python must handle it, 0 when counted here, -1 with an exception set. */
static int receive_other(Receiver *self, uint32_t key, PyObject *leg, const uint8_t *d, size_t n) {
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
    int none = rx == Py_None;
    Py_DECREF(rx);
    if (n < 12 || none) {
        self->delta.malformed++;
        return 0;
    }
    int32_t at = index_get(&self->t.leg_ix, key);
    if (at >= 0)
        self->t.legs[at].deferred = self->drains; /* its later packets in this drain follow this one */
    return 1;
}

static int flush_delta(Receiver *self, PyObject *engine, PyObject *stats) {
    struct {
        PyObject *target;
        const char *name;
        long long *value;
    } rows[] = {
        {engine, "rx_packets", &self->delta.rx_packets}, {engine, "rx_bytes", &self->delta.rx_bytes},
        {engine, "rx_rtcp", &self->delta.rx_rtcp},       {engine, "srtp_errors", &self->delta.srtp_errors},
        {engine, "rx_verified", &self->delta.rx_verified},
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

/* One datagram for leg `key`: counted here, or appended to `rest` for Python. 0, or -1 with an exception set. */
static int take(Receiver *self, uint32_t key, PyObject *leg, const uint8_t *d, size_t n, long long now,
                PyObject *rest) {
    int32_t at = known_stream(self, key, d, n);
    if (at >= 0) {
        receive_known(self, at, d, n, now);
        return 0;
    }
    int r = receive_other(self, key, leg, d, n);
    if (r <= 0)
        return r;
    PyObject *item = Py_BuildValue("(Oy#L)", leg, (const char *)d, (Py_ssize_t)n, now);
    if (item == NULL)
        return -1;
    r = PyList_Append(rest, item);
    Py_DECREF(item);
    return r;
}

static PyObject *drain_result(Receiver *self, PyObject *engine, PyObject *stats, long long read, PyObject *rest,
                              int failed) {
    if (flush_delta(self, engine, stats) < 0 || failed) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(LO)", read, rest);
    Py_DECREF(rest);
    return out;
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
    self->drains++;
    long long read = 0, offset = monotonic_minus_realtime();
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
                self->msg[i].msg_hdr.msg_control = self->ctl[i].buf;
                self->msg[i].msg_hdr.msg_controllen = sizeof self->ctl[i].buf;
            }
            int got = recvmmsg(fd, self->msg, RX_PER_SOCKET, MSG_DONTWAIT, NULL);
            if (got < 0) {
                if (errno == ECONNREFUSED)
                    self->delta.refused++;
                Py_DECREF(leg);
                continue;
            }
            long long now = now_ns();
            for (int i = 0; i < got && !failed; i++) {
                read++;
                long long at = arrival_ns(&self->msg[i].msg_hdr, offset, now);
                failed = take(self, (uint32_t)fd, leg, self->buf[i], self->msg[i].msg_len, at, rest) < 0;
            }
            Py_DECREF(leg);
        }
        if (read == before)
            break; /* only sockets of unknown or closed legs were ready */
    }
    return drain_result(self, engine, stats, read, rest, failed);
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
    self->drains++;
    long long read = 0, offset = monotonic_minus_realtime();
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
        long long now = now_ns();
        for (int i = 0; i < got && !failed; i++) {
            read++;
            uint32_t to = pktinfo_destination(&self->smsg[i].msg_hdr);
            if ((to >> 24) != 127)
                continue; /* not for one of our users */
            const uint8_t *d = self->sbuf[i];
            size_t n = self->smsg[i].msg_len;
            long long arrived = arrival_ns(&self->smsg[i].msg_hdr, offset, now);
            int32_t at = known_stream(self, to, d, n);
            if (at >= 0) { /* the common case: no Python object touched */
                receive_known(self, at, d, n, arrived);
                continue;
            }
            PyObject *key = PyLong_FromUnsignedLong(to);
            PyObject *leg = key != NULL ? PyDict_GetItemWithError(self->legs, key) : NULL;
            Py_XDECREF(key);
            if (leg == NULL) {
                failed = PyErr_Occurred() != NULL;
                continue;
            }
            Py_INCREF(leg);
            failed = take(self, to, leg, d, n, arrived, rest) < 0;
            Py_DECREF(leg);
        }
        if (got < SHARED_BATCH)
            break;
    }
    return drain_result(self, engine, stats, read, rest, failed);
}

static PyObject *Receiver_track(Receiver *self, PyObject *args) {
    unsigned int key, ssrc;
    PyObject *leg, *stats;
    if (!PyArg_ParseTuple(args, "IIOO", &key, &ssrc, &leg, &stats))
        return NULL;
    if (tables_track(&self->t, key, ssrc, leg, stats) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Receiver_receive(Receiver *self, PyObject *args) {
    unsigned int key;
    Py_buffer data;
    PyObject *engine, *stats;
    long long arrived = 0;
    if (!PyArg_ParseTuple(args, "Iy*OO|L", &key, &data, &engine, &stats, &arrived))
        return NULL;
    const uint8_t *d = data.buf;
    size_t n = (size_t)data.len;
    int32_t at = -1;
    if (n >= 12 && d[0] >= 128 && d[0] <= 191) {
        uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
        at = index_get(&self->t.stream_ix, stream_key(key, ssrc));
    }
    if (at < 0) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_KeyError, "receive: not an RTP packet of a tracked stream");
        return NULL;
    }
    receive_known(self, at, d, n, arrived > 0 ? arrived : now_ns());
    PyBuffer_Release(&data);
    if (flush_delta(self, engine, stats) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Receiver_sync(Receiver *self, PyObject *unused) {
    (void)unused;
    if (tables_sync(&self->t, self->histogram) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Receiver_forget(Receiver *self, PyObject *arg) {
    unsigned long key = PyLong_AsUnsignedLong(arg);
    if (key == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (tables_forget(&self->t, (uint32_t)key, self->histogram) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Receiver_methods[] = {
    {"drain_shared", (PyCFunction)Receiver_drain_shared, METH_VARARGS,
     "drain_shared(fd, budget, engine, stats) -> (read, [(leg, datagram, arrival_ns), ...]): drain a shared port (recvmmsg of "
     "64 with IP_PKTINFO; `legs` is keyed by each user's address as an integer)."},
    {"drain", (PyCFunction)Receiver_drain, METH_VARARGS,
     "drain(epoll_fd, budget, engine, stats) -> (read, [(leg, datagram, arrival_ns), ...]): read every ready leg socket "
     "(up to about `budget` datagrams), count the SRTP packets of tracked streams, return the rest for Python."},
    {"track", (PyCFunction)Receiver_track, METH_VARARGS,
     "track(key, ssrc, leg, stream_stats): count this stream's packets in C from now on (the leg's inbound session "
     "must be the native SrtpSession); the StreamStats' current values are the start."},
    {"receive", (PyCFunction)Receiver_receive, METH_VARARGS,
     "receive(key, datagram, engine, stats, arrival_ns=0): count one SRTP packet of a tracked stream (one that drain "
     "gave back, with the arrival time it gave; 0: now)."},
    {"sync", (PyCFunction)Receiver_sync, METH_NOARGS,
     "sync(): write the counters into the StreamStats and Leg objects, the delay buckets into the Histogram."},
    {"forget", (PyCFunction)Receiver_forget, METH_O,
     "forget(key): sync, then drop the leg with this key and its streams (it left the engine)."},
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

/* ---- the loops' timer ----------------------------------------------------------------------------------------- */

/* Why: a Trio sleep is a cancel scope whose deadline expires by raising and catching Cancelled; with the engine's
 * 20 ms tick and its short waits between busy drains that was the largest fixed cost of the tool's process
 * (~200 µs of CPU per tick with no packets at all, py-spy). A timerfd set to an absolute CLOCK_MONOTONIC deadline
 * (time.monotonic()'s clock) and awaited with trio.lowlevel.wait_readable costs two epoll_ctl calls instead
 * (peer/engine.py TimerfdWaiter). */
static PyObject *fastpeer_timer_open(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

static PyObject *fastpeer_timer_set(PyObject *module, PyObject *args) {
    (void)module;
    int fd;
    long long at_ns;
    if (!PyArg_ParseTuple(args, "iL", &fd, &at_ns))
        return NULL;
    if (at_ns < 1)
        at_ns = 1; /* 0 would disarm it: a deadline in the past expires at once */
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_value.tv_sec = (time_t)(at_ns / 1000000000LL);
    spec.it_value.tv_nsec = (long)(at_ns % 1000000000LL);
    if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) /* also resets the expiration count */
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *fastpeer_timer_clear(PyObject *module, PyObject *arg) {
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    uint64_t expirations = 0;
    if (read((int)fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLongLong(expirations);
}

static PyMethodDef fastpeer_functions[] = {
    {"timer_open", fastpeer_timer_open, METH_NOARGS,
     "timer_open() -> fd: a non-blocking CLOCK_MONOTONIC timerfd (close it with os.close)."},
    {"timer_set", fastpeer_timer_set, METH_VARARGS,
     "timer_set(fd, at_ns): arm it for the absolute time.monotonic_ns() value `at_ns` (past: at once)."},
    {"timer_clear", fastpeer_timer_clear, METH_O,
     "timer_clear(fd) -> expirations since the last read (0 if none): makes it unreadable again."},
    {NULL, NULL, 0, NULL},
};

/* ---- module --------------------------------------------------------------------------------------------------- */

static struct PyModuleDef fastpeer_module = {
    PyModuleDef_HEAD_INIT, "_fastpeer", "The load tool's native media engine (see _fastpeer.c).", -1,
    fastpeer_functions, NULL, NULL, NULL, NULL,
};

#define INTERN(var, text)                                                                                       \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return NULL;

PyMODINIT_FUNC PyInit__fastpeer(void) {
    INTERN(s_rx, "rx") INTERN(s_first_audio_ns, "first_audio_ns") INTERN(s_rx_count, "rx_count")
    INTERN(s_delay, "delay") INTERN(s_kind, "kind") INTERN(s_started, "started") INTERN(s_base_seq, "base_seq")
    INTERN(s_max_seq, "max_seq") INTERN(s_cycles, "cycles") INTERN(s_received, "received")
    INTERN(s_jitter, "jitter") INTERN(s_last_transit, "last_transit") INTERN(s_clock_khz, "clock_khz")
    INTERN(s_sender, "sender") INTERN(s_first_counter, "first_counter") INTERN(s_first_index, "first_index")
    INTERN(s_last_counter, "last_counter") INTERN(s_last_index, "last_index") INTERN(s_buckets, "buckets")
    INTERN(s_count, "count") INTERN(s_total, "total") INTERN(s_maximum, "maximum")
    INTERN(s_resolution, "resolution") INTERN(s_audio, "audio")
    INTERN(s_state, "state") INTERN(s_tx, "tx") INTERN(s_sources, "_sources") INTERN(s_enabled, "enabled")
    INTERN(s_stopped_ns, "stopped_ns") INTERN(s_started_ns, "started_ns") INTERN(s_seq, "seq") INTERN(s_ts, "ts")
    INTERN(s_counter, "counter") INTERN(s_tick_in_frame, "tick_in_frame") INTERN(s_frames, "frames")
    INTERN(s_stop, "stop") INTERN(s_connected, "connected") INTERN(s_offset, "offset") INTERN(s_pt, "pt")
    INTERN(s_ssrc, "ssrc") INTERN(s_source_id, "source_id") INTERN(s_ts_step, "ts_step")
    INTERN(s_packets_per_tick, "packets_per_tick") INTERN(s_frame_ticks, "frame_ticks") INTERN(s_sock, "sock")
    INTERN(s_route, "route") INTERN(s_buffers, "buffers")
    if (srtp_keys_global_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libcrypto offers no HMAC");
        return NULL;
    }
    SrtpSessionType.tp_name = "callsd.peer._fastpeer.SrtpSession";
    if (PyType_Ready(&SrtpSessionType) < 0 || PyType_Ready(&ReceiverType) < 0 || PyType_Ready(&SenderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpeer_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SrtpSession", (PyObject *)&SrtpSessionType) < 0 ||
        PyModule_AddObjectRef(m, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddObjectRef(m, "Sender", (PyObject *)&SenderType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
