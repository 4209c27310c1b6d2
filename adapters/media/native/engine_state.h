/* The native step's Engine object: its per-step counter deltas, its receive batch and send queue, and the helpers
 * that move them to and from Python (counters, sends, address tuples). Included once, by _engine.c, after
 * pyslots.h, addresses.h and send_gso.h. */
#ifndef CALLSD_ENGINE_STATE_H
#define CALLSD_ENGINE_STATE_H

enum { STEP_EMPTY = 0, STEP_BUDGET = 1, STEP_RAW = 2, STEP_RTP = 3, STEP_ERROR = 4 };

/* ---- interned attribute names ----------------------------------------------------------------------------- */

static PyObject *s_srtp, *s_rx, *s_tx, *s_data, *s_closed, *s_inbound, *s_octets, *s_last_ts, *s_session,
    *s_routes, *s_live, *s_cache, *s_pt_map, *s_receiver, *s_peer, *s_remap, *s_identity, *s_table, *s_ssrc,
    *s_address, *s_send_rtp, *s_clock, *s_on_voice, *s_twcc, *s_stamp;
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
    tx_addr_memo tx_memo[TX_ADDR_CACHE];
    PyObject *by_addr;    /* dict: (host, port) -> Peer (the endpoint's, not a copy) */
    PyObject *tcounters;  /* TransportCounters */
    PyObject *forwarder;  /* Forwarder or None: without one every RTP packet goes back to Python */
    PyObject *fcounters;  /* ForwarderCounters or None */
    PyObject *simulcast;  /* SimulcastForwarder or None: its layers are forwarded here too (simulcast_step.h) */
    int vad_threshold, vad_on, vad_max;
    transport_delta td;
    forwarder_delta fd;
    /* receive batch */
    struct mmsghdr rmsg[BATCH];
    struct iovec riov[BATCH];
    struct sockaddr_storage raddr[BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))]; /* SCM_TIMESTAMPNS (arrival_step.h) */
        struct cmsghdr align;
    } rctl[BATCH];
    double rarrival[BATCH]; /* each datagram's arrival, CLOCK_MONOTONIC seconds (arrival_step.h) */
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
    int prefetch; /* prefetch each packet's routes before forwarding (prefetch.h); CALLSD_NATIVE_PREFETCH=0: off */
    uint8_t blk[BUF];
    /* `blk` holds the extension block of datagram `blk_serial` at `blk_src` rewritten with remap table `blk_table`
     * (blk_ok: well formed), so the other routes of that packet with the same table reuse it (forward_route) */
    unsigned long long datagram_serial, blk_serial;
    const uint8_t *blk_src;
    int blk_table, blk_ok;
    uint8_t rtxbuf[BUF]; /* the original an RTX packet carries (simulcast_step.h) */
    uint8_t stampbuf[BUF]; /* a packet with its transport-wide sequence number (twcc_step.h) */
} Engine;

static PyTypeObject EngineType;

static int Engine_init(Engine *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"by_addr", "counters", "forwarder", "vad", "simulcast", NULL};
    PyObject *by_addr, *counters, *forwarder, *simulcast = Py_None;
    int thr = 60, on = 15, max = 30;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO(iii)|O", kwlist, &PyDict_Type, &by_addr, &counters,
                                     &forwarder, &thr, &on, &max, &simulcast))
        return -1;
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
    const char *prefetch = getenv("CALLSD_NATIVE_PREFETCH");
    self->prefetch = !(prefetch != NULL && strcmp(prefetch, "0") == 0);
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
    for (int i = 0; i < ADDR_CACHE; i++)
        Py_VISIT(self->rx_memo[i].tuple);
    for (int i = 0; i < TX_ADDR_CACHE; i++)
        Py_VISIT(self->tx_memo[i].tuple);
    Py_VISIT(self->by_addr);
    Py_VISIT(self->tcounters);
    Py_VISIT(self->forwarder);
    Py_VISIT(self->fcounters);
    Py_VISIT(self->simulcast);
    return 0;
}

static int Engine_clear(Engine *self) {
    for (int i = 0; i < ADDR_CACHE; i++)
        Py_CLEAR(self->rx_memo[i].tuple);
    for (int i = 0; i < TX_ADDR_CACHE; i++)
        Py_CLEAR(self->tx_memo[i].tuple);
    Py_CLEAR(self->by_addr);
    Py_CLEAR(self->tcounters);
    Py_CLEAR(self->forwarder);
    Py_CLEAR(self->fcounters);
    Py_CLEAR(self->simulcast);
    return 0;
}

static void Engine_dealloc(Engine *self) {
    PyObject_GC_UnTrack(self);
    Engine_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The counter deltas and the attribute each is added to: transport ones (td) on the endpoint's TransportCounters,
 * forwarder ones (fd) on the Forwarder's ForwarderCounters. Names interned once (counters_intern): the step returns
 * to Python ~3,000 times a second at 200 calls (every SRTCP and STUN datagram), and each return interned every
 * non-zero counter's name again (a new str, its hash and a lookup in the interned table, ~12 of them a return). */
typedef struct {
    const char *name;
    size_t offset;  /* of the delta in Engine */
    int forwarder;  /* 0: tcounters, 1: fcounters */
} counter_row;

static const counter_row counter_rows[] = {
    {"datagrams_in", offsetof(Engine, td.datagrams_in), 0},
    {"bytes_in", offsetof(Engine, td.bytes_in), 0},
    {"rtp_in", offsetof(Engine, td.rtp_in), 0},
    {"rtp_bytes_in", offsetof(Engine, td.rtp_bytes_in), 0},
    {"rtp_out", offsetof(Engine, td.rtp_out), 0},
    {"rtp_bytes_out", offsetof(Engine, td.rtp_bytes_out), 0},
    {"drop_srtp_auth", offsetof(Engine, td.drop_srtp_auth), 0},
    {"drop_replay", offsetof(Engine, td.drop_replay), 0},
    {"drop_srtp_other", offsetof(Engine, td.drop_srtp_other), 0},
    {"drop_not_ready", offsetof(Engine, td.drop_not_ready), 0},
    {"drop_send_buffer_full", offsetof(Engine, td.drop_send_buffer_full), 0},
    {"drop_send_error", offsetof(Engine, td.drop_send_error), 0},
    {"rtp_in", offsetof(Engine, fd.rtp_in), 1},
    {"rtp_in_bytes", offsetof(Engine, fd.rtp_in_bytes), 1},
    {"rtp_out", offsetof(Engine, fd.rtp_out), 1},
    {"rtp_out_bytes", offsetof(Engine, fd.rtp_out_bytes), 1},
    {"drop_malformed", offsetof(Engine, fd.drop_malformed), 1},
    {"drop_padding", offsetof(Engine, fd.drop_padding), 1},
    {"drop_no_route", offsetof(Engine, fd.drop_no_route), 1},
    {"rtx_in", offsetof(Engine, fd.rtx_in), 1},
};
#define COUNTER_ROWS (sizeof counter_rows / sizeof counter_rows[0])
static PyObject *counter_names[COUNTER_ROWS]; /* counter_rows' names, interned (counters_intern) */

static int counters_intern(void) {
    for (size_t i = 0; i < COUNTER_ROWS; i++)
        if ((counter_names[i] = PyUnicode_InternFromString(counter_rows[i].name)) == NULL)
            return -1;
    return 0;
}

/* Add the step's counter deltas to the Python counter objects; keeps going after a failure (reports it). */
static int flush_counters(Engine *self) {
    int rc = 0;
    PyObject *saved_type, *saved_value, *saved_tb;
    PyErr_Fetch(&saved_type, &saved_value, &saved_tb);
    for (size_t i = 0; i < COUNTER_ROWS; i++) {
        long long *value = (long long *)((char *)self + counter_rows[i].offset);
        PyObject *target = counter_rows[i].forwarder ? self->fcounters : self->tcounters;
        if (*value == 0 || target == NULL)
            continue;
        long long v = *value;
        *value = 0;
        if (add_ll(target, counter_names[i], v) < 0) {
            PyErr_Clear();
            rc = -1;
        }
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

/* time.monotonic(), as the time module computes it (_PyTime_AsSecondsDouble), without a call and a float. */
static double monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    volatile double d;
    if (ns % 1000000000LL == 0) {
        d = (double)(ns / 1000000000LL);
    } else {
        d = (double)ns;
        d /= 1e9;
    }
    return d;
}

static PyObject *time_monotonic; /* the time module's function (clock_intern) */

static int clock_intern(void) {
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return -1;
    time_monotonic = PyObject_GetAttrString(time_module, "monotonic");
    Py_DECREF(time_module);
    return time_monotonic == NULL ? -1 : 0;
}

/* `clock()` in seconds (a TransportSequencer's `_clock`): read here when it is time.monotonic, as it is in the
 * server, else called. 0, or -1 with an exception set. */
static int clock_now(PyObject *clock, double *out) {
    if (clock == time_monotonic) {
        *out = monotonic_seconds();
        return 0;
    }
    PyObject *now = PyObject_CallNoArgs(clock);
    if (now == NULL)
        return -1;
    double seconds = PyFloat_AsDouble(now);
    Py_DECREF(now);
    if (seconds == -1.0 && PyErr_Occurred())
        return -1;
    *out = seconds;
    return 0;
}

/* The address tuple of a received datagram (new reference), memoized. */
static PyObject *rx_address(Engine *self, const struct sockaddr_storage *sa) {
    socklen_t len = sockaddr_len(sa);
    addr_memo *m = &self->rx_memo[sockaddr_slot(sa, len)];
    if (m->tuple != NULL && m->len == len && memcmp(&m->sa, sa, len) == 0)
        return Py_NewRef(m->tuple);
    PyObject *t = sockaddr_to_address(sa);
    if (t == NULL || t == Py_None || len > (socklen_t)sizeof m->sa)
        return t;
    Py_XSETREF(m->tuple, Py_NewRef(t));
    memcpy(&m->sa, sa, len);
    m->len = len;
    return t;
}

/* The sockaddr of a destination tuple, memoized by identity: 0, or -1 when it is not a numeric address. */
static int tx_sockaddr(Engine *self, PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
    uint64_t h = (uint64_t)(uintptr_t)addr * 0x9E3779B97F4A7C15ULL;
    tx_addr_memo *m = &self->tx_memo[h >> 54]; /* the top 10 bits: TX_ADDR_CACHE == 1024 */
    if (m->tuple == addr) {
        memcpy(out, &m->sa, m->len);
        *len = m->len;
        return 0;
    }
    if (address_to_sockaddr(addr, out, len) < 0)
        return -1;
    if (*len <= (socklen_t)sizeof m->sa) {
        Py_XSETREF(m->tuple, Py_NewRef(addr));
        memcpy(&m->sa, out, *len);
        m->len = *len;
    }
    return 0;
}

#endif
