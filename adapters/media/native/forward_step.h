/* Forwarder.on_rtp and Peer.send_rtp in the native step: per-track reception statistics, voice activity, the
 * per-route rewrite (sequence, timestamp, SSRC, extension ids) and the protect into the send queue. Included once,
 * by _engine.c, after engine_state.h and twcc_step.h. */
#ifndef CALLSD_FORWARD_STEP_H
#define CALLSD_FORWARD_STEP_H

/* Peer.send_rtp for one rewritten packet: protect into the send queue, or Python's send_rtp when the peer's
 * transmit context or address is not one this module handles. A peer with a transport-wide sequencer (`twcc` not
 * None) has the packet stamped first: by sequencer_stamp (twcc_step.h) on a TransportSequencer's C record, or by
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
    if (PyObject_TypeCheck(twcc, &SequencerRecordType)) { /* stamped here, on its record */
        if (sequencer_stamp((SequencerRecord *)twcc, self->stampbuf, &out, &len) < 0) {
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
    int rc = queue_protected(self, (SrtpSession *)tx, slot, alen, out, len);
    Py_XDECREF(stamped);
    Py_DECREF(tx);
    return rc;
}

/* Forwarder._vad: debounced voice activity from the audio level. */
static int vad(Engine *self, PyObject *track, TrackRecord *rec, int level) {
    long long score = rec->vad_score;
    if (level <= self->vad_threshold) {
        if (score < self->vad_max)
            score++;
    } else if (score > 0) {
        score--;
    }
    rec->vad_score = score;
    int speaking = rec->speaking;
    int change = -1;
    if (!speaking && score >= self->vad_on)
        change = 1;
    else if (speaking && score == 0)
        change = 0;
    if (change < 0)
        return 0;
    rec->speaking = (char)change;
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

/* The route's payload type for `pt` (its pt_map): 1 and *opt, 0 when it has none, -1 on failure. */
static int route_pt(PyObject *route, int pt, long long *opt) {
    PyObject *pt_map = cs_getattr(route, s_pt_map);
    if (pt_map == NULL)
        return -1;
    PyObject *key = PyLong_FromLong(pt);
    PyObject *v = NULL;
    if (key != NULL && PyDict_CheckExact(pt_map)) {
        v = PyDict_GetItemWithError(pt_map, key);
        Py_XINCREF(v);
        if (v == NULL && !PyErr_Occurred())
            v = Py_NewRef(Py_None);
    } else if (key != NULL) {
        v = PyObject_CallMethod(pt_map, "get", "O", key);
    }
    Py_XDECREF(key);
    Py_DECREF(pt_map);
    if (v == NULL)
        return -1;
    if (v == Py_None) {
        Py_DECREF(v);
        return 0;
    }
    *opt = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return *opt == -1 && PyErr_Occurred() ? -1 : 1;
}

/* One route's copy of the packet (the body of Forwarder.on_rtp's loop). */
static int forward_route(Engine *self, PyObject *route, const uint8_t *d, size_t n, const cs_layout *lay,
                         long long seq, long long ts, int pt, int mk) {
    RouteRecord *rec = route_record(route); /* the rewrite's state and the counters (route_record.h) */
    if (rec == NULL)
        return -1;
    long long opt = 0;
    int has = 0; /* 0: the route does not carry this payload type */
    if (rec->pt_known) {
        for (int i = 0; i < rec->pt_count; i++) {
            if (rec->pt_from[i] == pt) {
                opt = rec->pt_to[i];
                has = 1;
                break;
            }
        }
    } else {
        has = route_pt(route, pt, &opt);
    }
    if (has <= 0)
        return has;
    PyObject *peer = NULL; /* only for SEND_PYTHON: the receiver's peer, sent to as send_to_peer does */
    int kind = route_send_kind(self, route, rec, &peer); /* send_state.h */
    if (kind < 0)
        return -1;
    if (kind == SEND_NO_PEER)
        return 0;
    int rc = -1;
    if (rec->resync) {
        rec->seq_offset = (rec->last_seq + 1 - seq) & 0xFFFF;
        rec->resync = 0;
    }
    long long oseq = (seq + rec->seq_offset) & 0xFFFF;
    if (((oseq - rec->last_seq) & 0xFFFF) < 0x8000)
        rec->last_seq = oseq;
    const uint8_t *blk = NULL;
    size_t blen = 0;
    if (lay->has_ext && rec->remap_kind != REMAP_UNKNOWN) { /* learnt when `remap` was set (send_state.h) */
        blen = lay->start - lay->off;
        if (rec->remap_kind == REMAP_IDENTITY) {
            blk = d + lay->off;
        } else {
            if (self->blk_serial != self->datagram_serial || self->blk_src != d ||
                self->blk_table != rec->remap_index) { /* not this packet's block with this table yet */
                memcpy(self->blk, d + lay->off, blen);
                self->blk_ok = cs_rewrite_ext_block(self->blk, blen, remap_tables[rec->remap_index]);
                self->blk_serial = self->datagram_serial;
                self->blk_src = d;
                self->blk_table = rec->remap_index;
            }
            if (!self->blk_ok) {
                self->fd.drop_malformed++;
                rc = 0;
                goto done;
            }
            blk = self->blk;
        }
    } else if (lay->has_ext) {
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
            self->blk_table = -1; /* `blk` no longer holds a learnt table's rewrite */
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
    long long ts_offset = rec->ts_offset, ssrc = rec->ssrc;
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
    if (kind != SEND_PYTHON && rec->send.epoch != send_state_epoch) /* Python ran since (an attribute read) */
        kind = route_send_kind(self, route, rec, &peer);
    if (kind < 0 || (kind == SEND_PYTHON ? send_to_peer(self, peer, out, len) :
                     kind == SEND_NO_PEER  ? 0 : send_direct(self, &rec->send, out, len)) < 0)
        goto done;
    rec->packets++;
    rec->octets += (long long)n - (long long)lay->start;
    self->fd.rtp_out++;
    self->fd.rtp_out_bytes += (long long)len;
    rc = 0;
done:
    Py_XDECREF(peer);
    return rc;
}

/* Forwarder.on_rtp for a packet whose SSRC the publisher's session knows. */
static int forward(Engine *self, PyObject *track, const uint8_t *d, size_t n) {
    long long seq = ((long long)d[2] << 8) | d[3];
    long long ts = ((long long)d[4] << 24) | ((long long)d[5] << 16) | ((long long)d[6] << 8) | d[7];
    TrackRecord *rec = track_record(track); /* its reception state (track_record.h) */
    if (rec == NULL)
        return -1;
    self->fd.rtp_in++;
    self->fd.rtp_in_bytes += (long long)n;
    rec->packets++;
    rec->octets += (long long)n;
    int started = rec->started;
    long long base_seq = 0, max_seq = started ? rec->max_seq : 0, cycles = started ? rec->cycles : 0;
    cs_track_seq(&started, &base_seq, &max_seq, &cycles, (int)seq);
    if (!rec->started) {
        rec->started = 1;
        rec->base_seq = base_seq;
    } else {
        rec->cycles = cycles;
    }
    rec->max_seq = max_seq;
    rec->last_ts = ts;
    PyObject *clock = cs_getattr(self->forwarder, s_clock); /* time.monotonic in the server: read, not called */
    if (clock == NULL)
        return -1;
    double now;
    int clocked = clock_now(clock, &now);
    Py_DECREF(clock);
    if (clocked < 0)
        return -1;
    rec->last_rx = now;
    cs_layout lay;
    if (cs_split(d, n, &lay)) {
        self->fd.drop_malformed++;
        return 0;
    }
    if (lay.has_ext) {
        long long level_id = rec->level_id;
        int level = level_id > 0 && level_id < 256 ? cs_read_audio_level(d, n, (int)level_id) : -1;
        if (level >= 0 && vad(self, track, rec, level & 0x7F) < 0)
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
            RouteRecord *r = route_record(PyList_GET_ITEM(values, i));
            if (r == NULL) {
                Py_DECREF(values);
                return -1;
            }
            r->seq_offset = (r->seq_offset - 1) & 0xFFFF;
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
    if (self->prefetch)
        prefetch_routes(live);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(live); i++) {
        if (forward_route(self, PyTuple_GET_ITEM(live, i), d, n, &lay, seq, ts, pt, mk) < 0) {
            Py_DECREF(live);
            return -1;
        }
    }
    Py_DECREF(live);
    return 0;
}

#endif
