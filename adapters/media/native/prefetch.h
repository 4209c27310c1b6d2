/* Prefetching the Python objects one ingress packet's routes will touch, level by level, before it is forwarded.
 * Included once, by _engine.c, after forward_step.h's names (engine_state.h) and twcc_step.h.
 *
 * Why: at capacity the step's time is memory stalls, not instructions. One hot call forwards 1 -> 7 in ~2.1 µs per
 * egress packet; the same step over 100 calls whose packets interleave, as a saturated server reads them, takes
 * ~7 µs (bench/forward_step.py --calls, docs/performance.md): every route, receiver, peer, transmit session,
 * transport-wide sequencer and the int objects behind their slots were evicted in the 20 ms since the call's last
 * packet, and forward_route meets them one after another, ~30 dependent cache misses per egress packet.
 *
 * So forward() first walks the routes once per level of that object graph (route -> its maps and its cached send
 * state's transmit session and sequencer (send_state.h), or when that is stale its receiver -> peer -> transmit
 * session, address and sequencer -> the session's streams and the sequencer's history slot), issuing a
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

static void prefetch_routes(PyObject *live) {
    Py_ssize_t n = PyTuple_GET_SIZE(live);
    if (n > PREFETCH_ROUTES)
        n = PREFETCH_ROUTES;
    PyObject *receiver[PREFETCH_ROUTES], *peer[PREFETCH_ROUTES];
    SequencerRecord *seq[PREFETCH_ROUTES];
    SrtpSession *tx[PREFETCH_ROUTES];
    for (Py_ssize_t i = 0; i < n; i++) { /* the route record, its cached send state included (three lines) */
        PyObject *route = PyTuple_GET_ITEM(live, i);
        prefetch_object(route);
        __builtin_prefetch((const char *)route + 128);
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* its maps, and what it sends with: cached, or the receiver to walk */
        PyObject *route = PyTuple_GET_ITEM(live, i);
        const RouteRecord *rec = is_route_record(route) ? (RouteRecord *)route : NULL;
        if (rec == NULL || !rec->pt_known)
            __builtin_prefetch(slot_peek(route, s_pt_map));
        if (rec == NULL || rec->remap_kind == REMAP_UNKNOWN)
            __builtin_prefetch(slot_peek(route, s_remap));
        const route_send *s = rec != NULL ? &rec->send : NULL;
        receiver[i] = NULL;
        tx[i] = NULL;
        seq[i] = NULL;
        if (s != NULL && s->epoch == send_state_epoch) {
            if (s->kind == SEND_DIRECT) {
                prefetch_object(tx[i] = (SrtpSession *)s->tx);
                prefetch_object(seq[i] = (SequencerRecord *)s->twcc);
            }
        } else {
            prefetch_object(receiver[i] = slot_peek(route, s_receiver));
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        prefetch_object(peer[i] = slot_peek(receiver[i], s_peer));
    for (Py_ssize_t i = 0; i < n; i++) { /* a walked peer's transmit session, address and sequencer */
        if (peer[i] == NULL)
            continue;
        PyObject *session = slot_peek(peer[i], s_tx);
        tx[i] = session != NULL && Py_TYPE(session) == &SrtpSessionType ? (SrtpSession *)session : NULL;
        prefetch_object(tx[i]);
        __builtin_prefetch(slot_peek(peer[i], s_address));
        PyObject *twcc = slot_peek(peer[i], s_twcc);
        seq[i] = twcc != NULL && PyObject_TypeCheck(twcc, &SequencerRecordType) ? (SequencerRecord *)twcc : NULL;
        prefetch_object(seq[i]);
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* the transmit session's streams and cipher; the history slot written */
        if (tx[i] != NULL) {
            __builtin_prefetch(tx[i]->ctx.streams);
            prefetch_object(tx[i]->ctx.rtp.cipher);
        }
        if (seq[i] != NULL)
            __builtin_prefetch(&seq[i]->ring[seq[i]->next_seq & seq[i]->mask], 1);
    }
}

#endif
