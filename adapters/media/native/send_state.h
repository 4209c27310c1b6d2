/* A route's cached send state: what its receiver's peer sends with (transmit session, transport-wide sequencer,
 * parsed address), kept in the route record (route_record.h) and read again only when something it came from may
 * have changed. Included once, by _engine.c, after engine_state.h and twcc_step.h.
 *
 * Why: at capacity the step is memory-bound (docs/adr/0033). Each forwarded copy walked route -> receiver -> peer
 * -> transmit session, address tuple and sequencer, five objects last touched ~800 sessions ago, each behind the
 * one before (dependent misses, ~12 of the ~35 simulated read misses per egress packet were that walk's), plus a
 * slot-memo lookup per attribute and the send address memo. With the state in the route, a copy touches the route
 * and the two objects it sends with, both of which the protect and the stamp touch anyway.
 *
 * When it is read again: a global epoch (send_epoch.h) moves on every write of an attribute the state comes from
 * (`receiver` of a route, `peer` of a receiver, `_tx`, `address` and `twcc` of a peer: the classes that hold them
 * subclass SendStateOwner, whose setattr moves it) and when a transmit session or a sequencer is freed (their
 * deallocs move it, so the borrowed pointers never dangle). A route whose state was read at the current epoch uses
 * it as is. Writes are rare (joins, leaves, ICE nominations, key changes); every route reads again once after each.
 * Only plain cases are kept: a receiver or peer of another class, a transmit session that is not an SrtpSession,
 * an address the memo cannot parse or a stamper that is not a SequencerRecord are read on every packet and sent the
 * way they always were (send_to_peer), so the outcome never depends on the cache (the differential tests hold). */
#ifndef CALLSD_SEND_STATE_H
#define CALLSD_SEND_STATE_H

enum { SEND_NO_PEER = 1, SEND_NOT_READY = 2, SEND_DIRECT = 3, SEND_PYTHON = 4 };

/* Whether `name` is one of the attributes a route's send state is read from. Attribute names in code are interned,
 * so identity decides; a name built at run time is compared by value. */
static int send_state_name(PyObject *name) {
    if (name == s_receiver || name == s_peer || name == s_tx || name == s_address || name == s_twcc)
        return 1;
    if (!PyUnicode_CheckExact(name) || PyUnicode_CHECK_INTERNED(name))
        return 0;
    return PyUnicode_Compare(name, s_receiver) == 0 || PyUnicode_Compare(name, s_peer) == 0 ||
           PyUnicode_Compare(name, s_tx) == 0 || PyUnicode_Compare(name, s_address) == 0 ||
           PyUnicode_Compare(name, s_twcc) == 0;
}

/* Copy a route's new pt_map into its record's pairs when it is a small dict of ints 0-127 (anything else: the step
 * reads the dict, as before). The maps are read-only once set (forwarder.py shares equal ones between routes), so
 * a write of the attribute is the only change there is. */
static void route_pt_learn(RouteRecord *rec, PyObject *pt_map) {
    rec->pt_known = 0;
    if (pt_map == NULL || !PyDict_CheckExact(pt_map) || PyDict_GET_SIZE(pt_map) > ROUTE_PT_PAIRS)
        return;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int n = 0;
    while (PyDict_Next(pt_map, &pos, &key, &value)) {
        if (!PyLong_CheckExact(key) || !PyLong_CheckExact(value))
            return;
        long from = PyLong_AsLong(key), to = PyLong_AsLong(value);
        if (from < 0 || from > 127 || to < 0 || to > 127) {
            PyErr_Clear(); /* an int too large for a long: not a payload type either */
            return;
        }
        rec->pt_from[n] = (uint8_t)from;
        rec->pt_to[n++] = (uint8_t)to;
    }
    rec->pt_count = (unsigned char)n;
    rec->pt_known = 1;
}

/* Learn a route's new remap into its record (route_record.h): its identity, or its table's index among the
 * distinct tables, copied there the first time it is seen. Anything unexpected (not a 256-byte table, an identity
 * that is not a bool, the table registry full) leaves REMAP_UNKNOWN: the step reads the object per packet, as
 * before, and raises what it raised. */
static void route_remap_learn(RouteRecord *rec, PyObject *remap) {
    rec->remap_kind = REMAP_UNKNOWN;
    if (remap == NULL)
        return;
    PyObject *identity = PyObject_GetAttr(remap, s_identity);
    PyObject *table = identity != NULL && identity == Py_False ? PyObject_GetAttr(remap, s_table) : NULL;
    if (identity == Py_True) {
        rec->remap_kind = REMAP_IDENTITY;
    } else if (table != NULL && PyBytes_CheckExact(table) && PyBytes_GET_SIZE(table) == 256) {
        const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(table);
        int i = 0;
        while (i < remap_table_count && memcmp(remap_tables[i], bytes, 256) != 0)
            i++;
        if (i == remap_table_count && remap_table_count < REMAP_TABLES)
            memcpy(remap_tables[remap_table_count++], bytes, 256);
        if (i < remap_table_count) {
            rec->remap_index = (uint8_t)i;
            rec->remap_kind = REMAP_TABLE;
        }
    }
    Py_XDECREF(identity);
    Py_XDECREF(table);
    PyErr_Clear();
}

static int name_is(PyObject *name, PyObject *interned) {
    return name == interned ||
           (PyUnicode_CheckExact(name) && !PyUnicode_CHECK_INTERNED(name) && PyUnicode_Compare(name, interned) == 0);
}

/* Whether writing `value` to the watched attribute `name` of `self` can change a route's cached state: only a
 * SEND_DIRECT state is cached (route_send_kind), and it was read from a route whose `receiver`, that receiver's
 * `peer`, and that peer's `_tx` (an SrtpSession) and `address` were all set and not None, and from the peer's
 * `twcc` while its `_tx` was set. So these writes cannot: the first write of an attribute (a new object: a join's
 * Peer, Session and OutRoute), None -> anything for `receiver`, `peer`, `_tx` and `address` (something becoming
 * ready), `twcc` written while the object's `_tx` is unset or None, and a value written over itself. Why: at 50
 * joins/s a join's ~20 such writes moved the epoch every ~1 ms, so during a join wave every forwarded copy (one per
 * route every 20 ms) read its receiver's state again: the walk the cache exists to save, when the core is busiest.
 * Anything else (a key change, an address move, a peer gone, a sequencer replaced) moves the epoch as before. */
static int send_state_write_matters(PyObject *self, PyObject *name, PyObject *value) {
    PyObject *old = PyObject_GenericGetAttr(self, name);
    if (old == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear(); /* cannot tell: assume it matters */
        else {
            PyErr_Clear();
            return 0; /* never set: no route read it */
        }
        return 1;
    }
    int matters;
    if (old == value)
        matters = 0;
    else if (name_is(name, s_twcc)) {
        PyObject *tx = PyObject_GenericGetAttr(self, s_tx);
        if (tx == NULL)
            PyErr_Clear();
        matters = tx != NULL && tx != Py_None;
        Py_XDECREF(tx);
    } else
        matters = old != Py_None;
    Py_DECREF(old);
    return matters;
}

/* setattr of RouteRecord and SendStateOwner: the generic one, after moving the epoch for a watched name when the
 * write can change a cached state (send_state_write_matters); a route's pt_map and remap are also learnt into its
 * record. */
static int send_state_setattro(PyObject *self, PyObject *name, PyObject *value) {
    if (send_state_name(name) && (value == NULL || send_state_write_matters(self, name, value)))
        send_state_epoch++;
    int rc = PyObject_GenericSetAttr(self, name, value);
    if (rc == 0 && PyObject_TypeCheck(self, &RouteRecordType)) {
        if (name_is(name, s_pt_map))
            route_pt_learn((RouteRecord *)self, value);
        else if (name_is(name, s_remap))
            route_remap_learn((RouteRecord *)self, value);
    }
    return rc;
}

static PyTypeObject SendStateOwnerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callsd.adapters.media.native._engine.SendStateOwner",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Base of the classes a route's cached send state is read from (the plane's sessions and the "
              "endpoint's peers): writing their `peer`, `_tx`, `address` or `twcc` tells the native step to read "
              "it again (send_state.h).",
    .tp_new = PyType_GenericNew,
    .tp_setattro = send_state_setattro,
};

/* Read `peer`'s send state into `s`: its kind, and for SEND_DIRECT the session, sequencer and parsed address.
 * SEND_PYTHON when the step cannot send for it itself. -1 with an exception set. */
static int send_state_read(Engine *self, PyObject *peer, route_send *s) {
    if (peer == Py_None)
        return SEND_NO_PEER;
    PyObject *tx = cs_getattr(peer, s_tx);
    if (tx == NULL)
        return -1;
    if (tx == Py_None) {
        Py_DECREF(tx);
        return SEND_NOT_READY;
    }
    int kind = Py_TYPE(tx) == &SrtpSessionType ? SEND_DIRECT : SEND_PYTHON;
    Py_DECREF(tx); /* the peer holds it: borrowed from here on, as the epoch allows */
    s->tx = tx;
    PyObject *twcc = cs_getattr(peer, s_twcc);
    if (twcc == NULL)
        return -1;
    if (twcc == Py_None)
        s->twcc = NULL;
    else if (PyObject_TypeCheck(twcc, &SequencerRecordType))
        s->twcc = twcc;
    else
        kind = SEND_PYTHON;
    Py_DECREF(twcc);
    if (kind != SEND_DIRECT)
        return kind;
    PyObject *address = cs_getattr(peer, s_address);
    if (address == NULL)
        return -1;
    struct sockaddr_storage sa;
    socklen_t alen = 0;
    if (tx_sockaddr(self, address, &sa, &alen) < 0 || alen > (socklen_t)sizeof s->addr)
        kind = SEND_PYTHON;
    else
        memcpy(&s->addr, &sa, alen);
    s->alen = alen;
    Py_DECREF(address);
    return kind;
}

/* The route's send state: SEND_NO_PEER, SEND_NOT_READY or SEND_DIRECT from its record (read again when the epoch
 * moved), or SEND_PYTHON with `*peer` set (a new reference) for send_to_peer. Kept only when the receiver and the
 * peer are SendStateOwners, so that a write to them moves the epoch. -1 with an exception set. */
static int route_send_kind(Engine *self, PyObject *route, RouteRecord *rec, PyObject **peer) {
    route_send *s = &rec->send;
    if (s->epoch == send_state_epoch)
        return s->kind;
    uint64_t epoch = send_state_epoch; /* a Python attribute read below may move it: then this read is stale */
    PyObject *receiver = cs_getattr(route, s_receiver);
    if (receiver == NULL)
        return -1;
    int watched = PyObject_TypeCheck(receiver, &SendStateOwnerType);
    PyObject *p = cs_getattr(receiver, s_peer);
    Py_DECREF(receiver);
    if (p == NULL)
        return -1;
    watched = watched && (p == Py_None || PyObject_TypeCheck(p, &SendStateOwnerType));
    int kind = send_state_read(self, p, s);
    if (kind == SEND_PYTHON) {
        *peer = p;
        s->epoch = 0;
        return kind;
    }
    Py_DECREF(p);
    if (kind < 0)
        return -1;
    s->kind = kind;
    s->epoch = watched && kind == SEND_DIRECT ? epoch : 0; /* not ready or no peer: read again each packet */
    return kind;
}

/* Protect `len` bytes of `out` with `tx` into the send queue's `slot` (its address already in saddr[slot], `alen`
 * long), queued for the next sendmmsg; a packet too long or refused counts as drop_srtp_other. Always 0. */
static int queue_protected(Engine *self, SrtpSession *tx, int slot, socklen_t alen, const uint8_t *out,
                           size_t len) {
    if (len > MAX_PACKET) {
        self->td.drop_srtp_other++;
        return 0;
    }
    memcpy(self->sbuf[slot], out, len);
    int plen = (int)len;
    if (session_protect(tx, self->sbuf[slot], &plen) != SRTP_OK) {
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

/* Peer.send_rtp for one rewritten packet on a route whose state is SEND_NOT_READY or SEND_DIRECT: what
 * send_to_peer does for an SrtpSession, a parsed address and a SequencerRecord or no stamper. -1 with an exception
 * set. */
static int send_direct(Engine *self, const route_send *s, const uint8_t *out, size_t len) {
    if (s->kind == SEND_NOT_READY) {
        self->td.drop_not_ready++;
        return 0;
    }
    PyObject *tx = Py_NewRef(s->tx), *twcc = Py_XNewRef(s->twcc); /* the stamp may call Python (its clock) */
    int slot = self->squeued;
    socklen_t alen = s->alen;
    memcpy(&self->saddr[slot], &s->addr, alen);
    int rc = twcc == NULL ? 0 : sequencer_stamp((SequencerRecord *)twcc, self->stampbuf, &out, &len);
    Py_XDECREF(twcc);
    if (rc == 0)
        rc = queue_protected(self, (SrtpSession *)tx, slot, alen, out, len);
    Py_DECREF(tx);
    return rc;
}

#endif
