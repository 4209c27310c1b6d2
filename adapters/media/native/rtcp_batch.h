/* The RTCP the server originates, protected and sent as one batch (issue 13, docs/adr/0042). Included once, by
 * _engine.c, after srtp_session.h, addresses.h and send_gso.h.
 *
 * The reporting round (adapters/media/plane_rtcp.py) builds a compound packet per session in Python; without this,
 * each one then pays an SRTCP protect through a Python call and one `sendto` (~5 us of syscall entry each on this
 * machine). send_rtcp_batch(fd, items) takes the whole tick's packets, `items` a sequence of
 * (SrtpSession, plain compound packet, destination address) triples, protects each in C into its own buffer (the
 * same srtp_ctx_protect_rtcp that SrtpSession.protect_rtcp runs, so the bytes and the SRTCP index are the same) and
 * sends them in order with sendmmsg, BATCH at a time. No GSO: the packets of one tick go to different peers and
 * differ in length.
 *
 * It returns the counts the Python path would have made packet by packet, for the caller to add to its counters:
 * (sent, bytes_sent, would_block, send_errors, srtp_failed, bad_items). A triple whose first item is not an
 * SrtpSession, whose packet is not a bytes-like object or whose address is not a numeric (host, port) is a
 * bad_item (the Python caller never builds one; counted rather than raised so one peer cannot stop the round).
 */
#ifndef CALLSD_RTCP_BATCH_H
#define CALLSD_RTCP_BATCH_H

typedef struct {
    uint8_t buf[BATCH][BUF];
    struct sockaddr_storage addr[BATCH];
    struct iovec iov[BATCH];
    struct mmsghdr msg[BATCH];
} rtcp_queue;

static rtcp_queue rtcp_scratch; /* used only while one call holds the GIL */

static PyObject *send_rtcp_batch(PyObject *module, PyObject *args) {
    (void)module;
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO", &fd, &items))
        return NULL;
    PyObject *seq = PySequence_Fast(items, "send_rtcp_batch: items must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(seq);
    PyObject **entries = PySequence_Fast_ITEMS(seq);
    send_counts counts = {0, 0, 0, 0};
    long long srtp_failed = 0, bad = 0;
    rtcp_queue *q = &rtcp_scratch;
    int n = 0;
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *entry = entries[i];
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(entry, 0), &SrtpSessionType)) {
            bad++;
            continue;
        }
        SrtpSession *session = (SrtpSession *)PyTuple_GET_ITEM(entry, 0);
        socklen_t addr_len;
        if (address_to_sockaddr(PyTuple_GET_ITEM(entry, 2), &q->addr[n], &addr_len) != 0) {
            bad++;
            continue;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(entry, 1), &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            bad++;
            continue;
        }
        int len = (int)view.len;
        if (view.len > MAX_PACKET) {
            PyBuffer_Release(&view);
            session->last_error = 6;
            srtp_failed++;
            continue;
        }
        memcpy(q->buf[n], view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        int rc = srtp_ctx_protect_rtcp(&session->ctx, q->buf[n], &len);
        if (rc != SRTP_OK) {
            session->last_error = rc;
            srtp_failed++;
            continue;
        }
        q->iov[n].iov_base = q->buf[n];
        q->iov[n].iov_len = (size_t)len;
        memset(&q->msg[n], 0, sizeof q->msg[n]);
        q->msg[n].msg_hdr.msg_name = &q->addr[n];
        q->msg[n].msg_hdr.msg_namelen = addr_len;
        q->msg[n].msg_hdr.msg_iov = &q->iov[n];
        q->msg[n].msg_hdr.msg_iovlen = 1;
        if (++n == BATCH) {
            send_plain(fd, q->msg, n, NULL, NULL, &counts, NULL);
            n = 0;
        }
    }
    if (n > 0)
        send_plain(fd, q->msg, n, NULL, NULL, &counts, NULL);
    Py_DECREF(seq);
    return Py_BuildValue("(LLLLLL)", counts.sent, counts.bytes, counts.would_block, counts.errors, srtp_failed, bad);
}

#endif
