/* Transport-cc arrivals toward publishers in the native step (the sender's ArrivalLog, arrival_log.h). Included
 * once, by _engine.c, after engine_state.h. */
#ifndef CALLSD_ARRIVAL_STEP_H
#define CALLSD_ARRIVAL_STEP_H

#include <time.h>

/* When each datagram of the receive batch (`got` of them) reached the host, on CLOCK_MONOTONIC (time.monotonic's
 * clock), into `self->rarrival`: the kernel's receive timestamp (SO_TIMESTAMPNS, set by udp.open_socket: wall clock,
 * mapped with one CLOCK_MONOTONIC - CLOCK_REALTIME offset read per batch), else when the batch was read. Why
 * (docs/adr/0035): a drain that runs late (CPU load, `coalesce_ms`, a long batch) would otherwise report the time
 * packets waited in the socket as network queueing in the transport-cc feedback, and a publisher's delay-based
 * estimate stops rising. Never later than the read (a wall-clock step between the arrival and the read). */
static void arrival_times(Engine *self, int got) {
    struct timespec mono, real;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &real);
    long long read_ns = (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec;
    long long offset = read_ns - ((long long)real.tv_sec * 1000000000LL + real.tv_nsec);
    for (int i = 0; i < got; i++) {
        long long at = read_ns;
        struct msghdr *m = &self->rmsg[i].msg_hdr;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec t;
                memcpy(&t, CMSG_DATA(c), sizeof t);
                long long kernel = (long long)t.tv_sec * 1000000000LL + t.tv_nsec + offset;
                at = kernel < read_ns ? kernel : read_ns;
                break;
            }
        }
        self->rarrival[i] = (double)(at / 1000000000LL) + (double)(at % 1000000000LL) * 1e-9;
    }
}

/* Transport-cc toward publishers (twcc_recv.py): a peer with a feedback sender (`twcc_in` not None) has the
 * transport-wide sequence number (extension `twcc_in.ext_id`, two bytes) of each RTP packet it sent, its SSRC and
 * `now`, when it arrived (CLOCK_MONOTONIC seconds: `arrival_times`) appended to the sender's ArrivalLog
 * (`twcc_in.log`, created here on the first one; arrival_log.h), which Python drains once per feedback round: no
 * Python call per packet. A sender whose `log` is something else is told each arrival by
 * `twcc_in.arrived(seq, ssrc, now)`. The Python path records the same in `UdpEndpoint.handle_datagram`. 0, or -1
 * with an exception set. */
static int record_arrival(PyObject *peer, const uint8_t *d, size_t n, double now) {
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

#endif
