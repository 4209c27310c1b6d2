/* Prefetching the Python objects one ingress packet's routes will touch, level by level, before it is forwarded.
 * Included once, by _engine.c, after forward_step.h's names (engine_state.h) and twcc_step.h.
 *
 * Why: at capacity the step's time is memory stalls, not instructions. One hot call forwards 1 -> 7 in ~2.1 µs per
 * egress packet; the same step over 100 calls whose packets interleave, as a saturated server reads them, takes
 * ~7 µs (bench/forward_step.py --calls, docs/performance.md): every route, receiver, peer, transmit session,
 * transport-wide sequencer and the int objects behind their slots were evicted in the 20 ms since the call's last
 * packet, and forward_route meets them one after another, ~30 dependent cache misses per egress packet.
 *
 * So forward() first walks the routes once per level of that object graph (route -> its values and receiver ->
 * peer -> transmit session, address and sequencer -> the sequencer's values and history buffers), issuing a
 * prefetch for every object of the next level of every route before touching any of them: each level's misses
 * overlap across the routes instead of queueing one by one. It only reads slot pointers of objects whose type the
 * slot memo (pyslots.h) says are plain slotted classes and never takes a reference, calls Python or changes
 * anything: forwarding reads and writes exactly what it did, in the same order (the differential tests hold). */
#ifndef CALLSD_PREFETCH_H
#define CALLSD_PREFETCH_H

#define PREFETCH_ROUTES 16 /* routes prefetched per packet (a larger fan-out forwards the rest unprefetched) */

/* The object in `obj`'s plain slot `name`, borrowed, or NULL (not a plain slot, or unset): no reference, no call. */
static inline PyObject *slot_peek(PyObject *obj, PyObject *name) {
    if (obj == NULL || obj == Py_None)
        return NULL;
    Py_ssize_t offset = slot_offset(obj, name);
    return offset >= 0 ? *(PyObject **)((char *)obj + offset) : NULL;
}

static inline void prefetch_object(const void *obj) {
    if (obj != NULL) {
        __builtin_prefetch(obj);
        __builtin_prefetch((const char *)obj + 64); /* slotted objects span two lines */
    }
}

/* The contents of a bytearray or array.array history buffer (the slots are written at `index`). */
static inline void prefetch_history(PyObject *buffer, Py_ssize_t index, Py_ssize_t itemsize) {
    if (buffer == NULL)
        return;
    const char *data = NULL;
    if (PyByteArray_CheckExact(buffer))
        data = PyByteArray_AS_STRING(buffer);
    else if (Py_TYPE(buffer)->tp_itemsize == 0 && strcmp(Py_TYPE(buffer)->tp_name, "array.array") == 0)
        data = *(char *const *)((const char *)buffer + sizeof(PyVarObject)); /* arrayobject.ob_item */
    if (data != NULL && index >= 0 && index < Py_SIZE(buffer))
        __builtin_prefetch(data + index * itemsize, 1);
}

static void prefetch_routes(PyObject *live) {
    Py_ssize_t n = PyTuple_GET_SIZE(live);
    if (n > PREFETCH_ROUTES)
        n = PREFETCH_ROUTES;
    PyObject *receiver[PREFETCH_ROUTES], *peer[PREFETCH_ROUTES], *seq[PREFETCH_ROUTES];
    SrtpSession *tx[PREFETCH_ROUTES];
    for (Py_ssize_t i = 0; i < n; i++)
        prefetch_object(PyTuple_GET_ITEM(live, i));
    for (Py_ssize_t i = 0; i < n; i++) { /* its maps (its numbering and counters are in the route: route_record.h) */
        PyObject *route = PyTuple_GET_ITEM(live, i);
        __builtin_prefetch(slot_peek(route, s_pt_map));
        __builtin_prefetch(slot_peek(route, s_remap));
        prefetch_object(receiver[i] = slot_peek(route, s_receiver));
    }
    for (Py_ssize_t i = 0; i < n; i++)
        prefetch_object(peer[i] = slot_peek(receiver[i], s_peer));
    for (Py_ssize_t i = 0; i < n; i++) { /* the peer's transmit session, address and sequencer */
        PyObject *session = slot_peek(peer[i], s_tx);
        tx[i] = session != NULL && Py_TYPE(session) == &SrtpSessionType ? (SrtpSession *)session : NULL;
        prefetch_object(tx[i]);
        __builtin_prefetch(slot_peek(peer[i], s_address));
        seq[i] = slot_peek(peer[i], s_twcc);
        if (seq[i] != NULL && seq[i] != Py_None)
            prefetch_object(seq[i]);
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* the transmit session's streams and cipher; the sequencer's values */
        if (tx[i] != NULL) {
            __builtin_prefetch(tx[i]->ctx.streams);
            prefetch_object(tx[i]->ctx.rtp.cipher);
        }
        if (seq[i] == NULL || seq[i] == Py_None)
            continue;
        PyObject *names[] = {s_ext_id, s_next_seq, s_mask, s_cluster_now, s_stamped, s_sent_bytes,
                             s_send_ms, s_size, s_seq_hist, s_reported, s_cluster};
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            __builtin_prefetch(slot_peek(seq[i], names[k]));
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* the history slots this packet's stamp writes */
        if (seq[i] == NULL || seq[i] == Py_None)
            continue;
        PyObject *next = slot_peek(seq[i], s_next_seq), *mask = slot_peek(seq[i], s_mask);
        if (next == NULL || mask == NULL || !PyLong_CheckExact(next) || !PyLong_CheckExact(mask))
            continue;
        int over_next = 0, over_mask = 0;
        long long slot = PyLong_AsLongLongAndOverflow(next, &over_next) & PyLong_AsLongLongAndOverflow(mask, &over_mask);
        if (over_next || over_mask || slot < 0)
            continue;
        prefetch_history(slot_peek(seq[i], s_send_ms), (Py_ssize_t)slot, 8);
        prefetch_history(slot_peek(seq[i], s_size), (Py_ssize_t)slot, 2);
        prefetch_history(slot_peek(seq[i], s_seq_hist), (Py_ssize_t)slot, 4);
        prefetch_history(slot_peek(seq[i], s_reported), (Py_ssize_t)slot, 1);
        prefetch_history(slot_peek(seq[i], s_cluster), (Py_ssize_t)slot, 4);
    }
}

#endif
