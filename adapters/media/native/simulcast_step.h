/* The native step's video streams that are not in a session's `inbound` table (docs/adr/0024): simulcast layers,
 * their RTX streams, and the RTX streams of single-encoding tracks. Included once, by _engine.c, after forward().
 *
 * Every function mirrors one Python method on the same objects, which stays the reference:
 *   forward_other      adapters/media/plane.py          MediaPlane.on_rtp's fallbacks after Forwarder.on_rtp
 *   publisher_rtx      adapters/media/retransmit.py     unwrap_publisher_rtx
 *   layer_rtx          adapters/media/simulcast_fwd.py  SimulcastForwarder._on_rtx
 *   layer_media        adapters/media/simulcast_fwd.py  SimulcastForwarder._on_media (and _count)
 *   layer_route        adapters/media/simulcast_fwd.py  SimulcastForwarder._forward
 *   switch_packet      core/video/simulcast.py          LayerSwitcher.on_packet (and _rebase), in layer_switch.h
 * What is a decision, not per-packet work, stays a Python call, made only when due: the layer choice
 * (`_decide`: when the estimate or the layer rates changed, or DECIDE_INTERVAL_S after the last one), the rate
 * window's close (`SimulcastTrack.roll`, once a second), a route's first packet (`_route_state`), a switch
 * (`_switched`, which logs) and a key-frame request (`_keyframe`, at most one per second per layer). A layer's first
 * packet, whose SSRC is learnt from its RID, goes to Python as before; the Python method indexes the SSRC in the
 * session's `simulcast_in` table and the step finds it there from the next packet on.
 */
#ifndef CALLSD_SIMULCAST_STEP_H
#define CALLSD_SIMULCAST_STEP_H

#include "video_rules.h"
#include "video_attrs.h"
#include "layer_switch.h"

#define RATE_WINDOW_S 1.0     /* simulcast_fwd.RATE_WINDOW_S */
#define DECIDE_INTERVAL_S 0.1 /* simulcast_fwd.DECIDE_INTERVAL_S */
#define ROUTE_CACHE 512       /* simulcast_fwd.ROUTE_CACHE */

static PyObject *s_simulcast_in, *s_inbound_rtx, *s_track, *s_layer, *s_rtx, *s_codec, *s_primary_pt,
    *s_layer_ssrcs, *s_received, *s_count, *s_newest, *s_window_start, *s_rates, *s_generation, *s_roll,
    *s_switcher, *s_decided_at, *s_decided_gen, *s_decide, *s_route_state, *s_switched, *s_keyframe, *s_last_pli,
    *s_sent, *s_last_at, *s_session_id, *s_codecs, *s_rtx_pt, *s_layer_rtp_in, *s_layer_bytes_in, *s_layer_rtp_out,
    *s_layer_bytes_out, *s_vp8, *s_h264;

static int video_intern(void) {
    struct {
        PyObject **var;
        const char *text;
    } names[] = {
        {&s_simulcast_in, "simulcast_in"}, {&s_inbound_rtx, "inbound_rtx"}, {&s_track, "track"},
        {&s_layer, "layer"}, {&s_rtx, "rtx"}, {&s_codec, "codec"}, {&s_primary_pt, "primary_pt"},
        {&s_layer_ssrcs, "layer_ssrcs"}, {&s_received, "received"}, {&s_count, "count"}, {&s_newest, "newest"},
        {&s_window_start, "window_start"}, {&s_rates, "rates"}, {&s_generation, "generation"}, {&s_roll, "roll"},
        {&s_switcher, "switcher"}, {&s_decided_at, "decided_at"}, {&s_decided_gen, "decided_gen"},
        {&s_decide, "_decide"}, {&s_route_state, "_route_state"}, {&s_switched, "_switched"},
        {&s_keyframe, "_keyframe"}, {&s_last_pli, "last_pli"}, {&s_sent, "sent"}, {&s_last_at, "last_at"},
        {&s_session_id, "session_id"}, {&s_codecs, "codecs"}, {&s_rtx_pt, "rtx_pt"},
        {&s_layer_rtp_in, "layer_rtp_in"}, {&s_layer_bytes_in, "layer_bytes_in"},
        {&s_layer_rtp_out, "layer_rtp_out"}, {&s_layer_bytes_out, "layer_bytes_out"}, {&s_vp8, "vp8"},
        {&s_h264, "h264"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].var = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    return layer_switch_intern();
}

/* -- a route's copy ------------------------------------------------------------------------------------------ */

/* route_pt (a route's payload type for a packet's): forward_step.h, shared with the single-track copy. */

/* The extension block of a route's copy: the raw one (identity remap), the rewritten one in `scratch`, or NULL
 * with *malformed set. -1 with an exception set on failure. */
static int route_ext_block(PyObject *route, const uint8_t *raw, size_t blen, uint8_t *scratch, const uint8_t **out,
                           int *malformed) {
    *malformed = 0;
    PyObject *remap = cs_getattr(route, s_remap);
    if (remap == NULL)
        return -1;
    int identity = get_truth(remap, s_identity);
    PyObject *table = identity == 0 ? cs_getattr(remap, s_table) : NULL;
    Py_DECREF(remap);
    if (identity < 0 || (identity == 0 && table == NULL))
        return -1;
    if (identity) {
        *out = raw;
        return 0;
    }
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256) {
        Py_DECREF(table);
        PyErr_SetString(PyExc_TypeError, "ExtensionRemap.table must be 256 bytes");
        return -1;
    }
    memcpy(scratch, raw, blen);
    int ok = cs_rewrite_ext_block(scratch, blen, (const uint8_t *)PyBytes_AS_STRING(table));
    Py_DECREF(table);
    *out = ok ? scratch : NULL;
    *malformed = !ok;
    return 0;
}

/* -- one layer packet ---------------------------------------------------------------------------------------- */

/* SimulcastForwarder._keyframe's throttle, in C: the Python call only when it would ask for one. */
static int maybe_keyframe(Engine *self, PyObject *st, PyObject *sw, double now) {
    long long current, target;
    if (get_opt_ll(sw, s_current, &current) < 0 || get_ll(sw, s_target, &target) < 0)
        return -1;
    if (current == target)
        return 0;
    PyObject *ssrc = list_item(st, s_layer_ssrcs, (Py_ssize_t)target);
    if (ssrc == NULL)
        return -1;
    int known = ssrc != Py_None;
    Py_DECREF(ssrc);
    if (!known)
        return 0;
    PyObject *last = list_item(st, s_last_pli, (Py_ssize_t)target);
    if (last == NULL)
        return -1;
    double at = PyFloat_AsDouble(last);
    Py_DECREF(last);
    if (at == -1.0 && PyErr_Occurred())
        return -1;
    if (now - at < 1.0)
        return 0;
    PyObject *t = PyLong_FromLongLong(target), *n = PyFloat_FromDouble(now);
    int rc = t != NULL && n != NULL
                 ? call_ok(PyObject_CallMethodObjArgs(self->simulcast, s_keyframe, st, t, n, NULL))
                 : -1;
    Py_XDECREF(t);
    Py_XDECREF(n);
    return rc;
}

/* SimulcastForwarder._forward: one route's copy of a layer packet. */
static int layer_route(Engine *self, PyObject *st, PyObject *route, const layer_packet *p, const uint8_t *d,
                       size_t n, const cs_layout *lay) {
    long long opt = 0;
    int has = route_pt(route, d[1] & 0x7F, &opt);
    if (has <= 0)
        return has;
    PyObject *receiver = cs_getattr(route, s_receiver);
    if (receiver == NULL)
        return -1;
    PyObject *peer = cs_getattr(receiver, s_peer);
    PyObject *sid = peer != NULL && peer != Py_None ? cs_getattr(receiver, s_session_id) : NULL;
    Py_DECREF(receiver);
    if (peer == NULL || peer == Py_None || sid == NULL) {
        Py_XDECREF(peer);
        return peer == Py_None ? 0 : -1;
    }
    PyObject *rs = NULL, *sw = NULL, *now = NULL;
    int rc = -1;
    PyObject *routes = cs_getattr(st, s_routes);
    if (routes == NULL)
        goto done;
    rs = PyDict_Check(routes) ? PyDict_GetItemWithError(routes, sid) : NULL;
    Py_XINCREF(rs);
    Py_DECREF(routes);
    if (rs == NULL && PyErr_Occurred())
        goto done;
    if (rs == NULL) {
        PyObject *layer = PyLong_FromLong(p->layer);
        rs = layer == NULL ? NULL : PyObject_CallMethodObjArgs(self->simulcast, s_route_state, st, route, layer, NULL);
        Py_XDECREF(layer);
        if (rs == NULL)
            goto done;
    }
    now = PyFloat_FromDouble(p->now);
    double decided_at;
    long long decided_gen, generation;
    if (now == NULL || get_double(rs, s_decided_at, &decided_at) < 0 || get_ll(rs, s_decided_gen, &decided_gen) < 0 ||
        get_ll(st, s_generation, &generation) < 0)
        goto done;
    if ((p->now - decided_at >= DECIDE_INTERVAL_S || decided_gen != generation) &&
        call_ok(PyObject_CallMethodObjArgs(self->simulcast, s_decide, st, rs, sid, now, NULL)) < 0)
        goto done;
    sw = cs_getattr(rs, s_switcher);
    if (sw == NULL)
        goto done;
    rewritten out = {0, 0, 0, 0, 0};
    int forwarded = switch_packet(sw, p, &out);
    if (forwarded < 0 || maybe_keyframe(self, st, sw, p->now) < 0)
        goto done;
    if (!forwarded) {
        rc = 0;
        goto done;
    }
    if (out.switched) {
        PyObject *layer = PyLong_FromLong(p->layer), *one = PyLong_FromLong(1);
        int bad = layer == NULL || one == NULL ||
                  call_ok(PyObject_CallMethodObjArgs(self->simulcast, s_switched, route, st, layer, one, NULL)) < 0;
        Py_XDECREF(layer);
        Py_XDECREF(one);
        if (bad)
            goto done;
    }
    const uint8_t *blk = NULL;
    size_t blen = 0;
    if (lay->has_ext) {
        int malformed;
        blen = lay->start - lay->off;
        self->blk_table = -1; /* `blk` no longer holds forward_route's rewrite */
        if (route_ext_block(route, d + lay->off, blen, self->blk, &blk, &malformed) < 0)
            goto done;
        if (malformed) {
            self->fd.drop_malformed++;
            rc = 0;
            goto done;
        }
    }
    RouteRecord *rec = route_record(route); /* route_record.h */
    if (rec == NULL)
        goto done;
    long long ts_offset = rec->ts_offset, ssrc = rec->ssrc;
    uint8_t pkt[BUF];
    uint32_t ts = (uint32_t)((out.timestamp + ts_offset) & 0xFFFFFFFFLL);
    size_t len = cs_build(pkt, sizeof pkt, d, n, lay, (uint8_t)((d[1] & 0x80) | (opt & 0x7F)), (uint16_t)out.seq,
                          ts, (uint32_t)(ssrc & 0xFFFFFFFFLL), blk, blen);
    if (len == 0) {
        PyErr_SetString(PyExc_ValueError, "rewritten packet too long");
        goto done;
    }
    if (out.picture_id >= 0 || out.tl0picidx >= 0)
        cs_rewrite_vp8_ids(pkt + lay->start, len - lay->start, out.picture_id, out.tl0picidx);
    long long last_ts;
    if (get_opt_ll(rs, s_last_ts, &last_ts) < 0)
        goto done;
    if ((last_ts < 0 || newer(ts, last_ts, 32)) && (set_ll(rs, s_last_ts, ts) < 0 || cs_setattr(rs, s_last_at, now) < 0))
        goto done;
    PyObject *data = PyBytes_FromStringAndSize((const char *)pkt, (Py_ssize_t)len);
    PyObject *sent = data != NULL ? cs_getattr(rs, s_sent) : NULL;
    int bad = sent == NULL || list_set(sent, (Py_ssize_t)(out.seq % ROUTE_CACHE), data) < 0;
    Py_XDECREF(sent);
    Py_XDECREF(data);
    if (bad)
        goto done;
    rec->last_seq = out.seq;
    if (send_to_peer(self, peer, pkt, len) < 0)
        goto done;
    rec->packets++;
    rec->octets += (long long)n - (long long)lay->start;
    self->fd.rtp_out++;
    self->fd.rtp_out_bytes += (long long)len;
    if (list_add_ll(self->simulcast, s_layer_rtp_out, p->layer, 1) < 0 ||
        list_add_ll(self->simulcast, s_layer_bytes_out, p->layer, (long long)len) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(sw);
    Py_XDECREF(now);
    Py_XDECREF(rs);
    Py_DECREF(sid);
    Py_DECREF(peer);
    return rc;
}

/* The codec of a simulcast track (its `codec`: "vp8" | "h264") as CS_CODEC_*. */
static int track_codec(PyObject *st) {
    PyObject *codec = cs_getattr(st, s_codec);
    if (codec == NULL)
        return -1;
    int id = CS_CODEC_OTHER;
    if (PyUnicode_Check(codec)) {
        if (PyUnicode_Compare(codec, s_vp8) == 0)
            id = CS_CODEC_VP8;
        else if (PyUnicode_Compare(codec, s_h264) == 0)
            id = CS_CODEC_H264;
    }
    Py_DECREF(codec);
    return PyErr_Occurred() ? -1 : id;
}

/* SimulcastForwarder._on_media: a packet of layer `layer` of simulcast track `st`. */
static int layer_media(Engine *self, PyObject *st, long layer, const uint8_t *d, size_t n) {
    self->fd.rtp_in++;
    self->fd.rtp_in_bytes += (long long)n;
    long start = cs_header_length(d, n);
    if (start < 0) {
        self->fd.drop_malformed++;
        return 0;
    }
    PyObject *clock = PyObject_CallMethodNoArgs(self->simulcast, s_clock);
    if (clock == NULL)
        return -1;
    double now = PyFloat_AsDouble(clock);
    Py_DECREF(clock);
    if (now == -1.0 && PyErr_Occurred())
        return -1;
    long long seq = (long long)d[2] << 8 | d[3];
    PyObject *row = list_item(st, s_received, layer);
    int bad = row == NULL || list_set_ll(row, (Py_ssize_t)(seq % ROUTE_CACHE), seq) < 0;
    Py_XDECREF(row);
    if (bad || list_add_ll(st, s_count, layer, 1) < 0)
        return -1;
    PyObject *newest_obj = list_item(st, s_newest, layer);
    if (newest_obj == NULL)
        return -1;
    long long newest = newest_obj == Py_None ? -1 : PyLong_AsLongLong(newest_obj);
    Py_DECREF(newest_obj);
    if (newest == -1 && PyErr_Occurred())
        return -1;
    if (newest < 0 || newer(seq, newest, 16)) {
        PyObject *list = cs_getattr(st, s_newest);
        bad = list == NULL || list_set_ll(list, layer, seq) < 0;
        Py_XDECREF(list);
        if (bad)
            return -1;
    }
    if (list_add_ll(self->simulcast, s_layer_rtp_in, layer, 1) < 0 ||
        list_add_ll(self->simulcast, s_layer_bytes_in, layer, (long long)n) < 0)
        return -1;
    /* _count: the rate window (closed by Python, once a second) */
    double window_start;
    if (get_double(st, s_window_start, &window_start) < 0)
        return -1;
    if (now - window_start >= RATE_WINDOW_S) {
        PyObject *at = PyFloat_FromDouble(now);
        bad = at == NULL || call_ok(PyObject_CallMethodOneArg(st, s_roll, at)) < 0;
        Py_XDECREF(at);
        if (bad)
            return -1;
    }
    if (list_add_ll(st, s_octets, layer, (long long)n) < 0)
        return -1;
    PyObject *rate = list_item(st, s_rates, layer);
    if (rate == NULL)
        return -1;
    int idle = PyObject_Not(rate);
    Py_DECREF(rate);
    if (idle < 0)
        return -1;
    if (idle) {
        PyObject *rates = cs_getattr(st, s_rates);
        bad = rates == NULL || list_set_ll(rates, layer, 1) < 0;
        Py_XDECREF(rates);
        if (bad || add_ll(st, s_generation, 1) < 0)
            return -1;
    }
    int codec = track_codec(st);
    if (codec < 0)
        return -1;
    const uint8_t *payload = d + start;
    size_t plen = n - (size_t)start;
    layer_packet p = {.layer = layer, .seq = seq,
                      .timestamp = (long long)d[4] << 24 | (long long)d[5] << 16 | (long long)d[6] << 8 | d[7],
                      .keyframe_start = cs_keyframe_start(codec, payload, plen), .now = now, .now_ms = now * 1000.0,
                      .picture_id = -1, .picture_id_bits = 15, .tl0picidx = -1};
    cs_vp8 vp8;
    if (codec == CS_CODEC_VP8 && cs_vp8_descriptor(payload, plen, &vp8)) {
        p.picture_id = vp8.picture_id;
        p.picture_id_bits = vp8.picture_id_bits ? vp8.picture_id_bits : 15;
        p.tl0picidx = vp8.tl0picidx;
    }
    cs_layout lay;
    cs_split(d, n, &lay); /* well formed: cs_header_length accepted it */
    PyObject *track = cs_getattr(st, s_track);
    PyObject *live = track != NULL ? cs_getattr(track, s_live) : NULL;
    Py_XDECREF(track);
    if (live == NULL)
        return -1;
    if (!PyTuple_Check(live)) {
        Py_DECREF(live);
        PyErr_SetString(PyExc_TypeError, "InTrack.live must be a tuple");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(live); i++) {
        if (layer_route(self, st, PyTuple_GET_ITEM(live, i), &p, d, n, &lay) < 0) {
            Py_DECREF(live);
            return -1;
        }
    }
    Py_DECREF(live);
    return 0;
}

/* SimulcastForwarder._on_rtx: a publisher's retransmission of a packet of `layer`. */
static int layer_rtx(Engine *self, PyObject *st, long layer, const uint8_t *d, size_t n) {
    self->fd.rtx_in++;
    long long media_ssrc, pt;
    PyObject *ssrc = list_item(st, s_layer_ssrcs, layer);
    if (ssrc == NULL)
        return -1;
    media_ssrc = ssrc == Py_None ? -1 : PyLong_AsLongLong(ssrc);
    Py_DECREF(ssrc);
    if ((media_ssrc == -1 && PyErr_Occurred()) || get_ll(st, s_primary_pt, &pt) < 0)
        return -1;
    size_t len = media_ssrc < 0 ? 0 : cs_unwrap_rtx(self->rtxbuf, d, n, (uint32_t)media_ssrc, (int)pt);
    if (len == 0) { /* a padding probe, or a layer not seen yet */
        self->fd.drop_padding++;
        return 0;
    }
    long long seq = (long long)self->rtxbuf[2] << 8 | self->rtxbuf[3];
    PyObject *row = list_item(st, s_received, layer);
    if (row == NULL)
        return -1;
    long long seen = -1;
    if (PyList_Check(row) && PyList_GET_SIZE(row) == ROUTE_CACHE)
        seen = PyLong_AsLongLong(PyList_GET_ITEM(row, seq % ROUTE_CACHE));
    Py_DECREF(row);
    if (seen == -1 && PyErr_Occurred())
        return -1;
    if (seen == seq) { /* a probe made of a packet already forwarded */
        self->fd.drop_padding++;
        return 0;
    }
    return layer_media(self, st, layer, self->rtxbuf, len);
}

/* retransmit.unwrap_publisher_rtx for an RTX packet of single-encoding `track` (its RTX SSRC and payload type
 * match): 1 handled, 0 when Python must take it (the original's SSRC is not in `inbound`), -1 on failure. */
static int publisher_rtx(Engine *self, PyObject *inbound, PyObject *track, const uint8_t *d, size_t n) {
    long long media_ssrc;
    if (get_opt_ll(track, s_ssrc, &media_ssrc) < 0)
        return -1;
    PyObject *key = PyLong_FromLongLong(media_ssrc);
    if (key == NULL)
        return -1;
    PyObject *target = PyDict_GetItemWithError(inbound, key); /* borrowed */
    Py_DECREF(key);
    if (target == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(target);
    PyObject *codecs = cs_getattr(track, s_codecs);
    PyObject *first = NULL, *value;
    Py_ssize_t pos = 0;
    if (codecs != NULL && PyDict_Check(codecs) && PyDict_Next(codecs, &pos, &first, &value))
        Py_INCREF(first);
    else
        first = NULL;
    Py_XDECREF(codecs);
    long long pt = first != NULL ? PyLong_AsLongLong(first) : -1;
    Py_XDECREF(first);
    if (pt < 0) {
        Py_DECREF(target);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "InTrack.codecs must be a non-empty dict");
        return -1;
    }
    self->fd.rtx_in++;
    size_t len = cs_unwrap_rtx(self->rtxbuf, d, n, (uint32_t)media_ssrc, (int)pt);
    int rc = 1;
    if (len == 0)
        self->fd.drop_padding++;
    else if (forward(self, target, self->rtxbuf, len) < 0)
        rc = -1;
    Py_DECREF(target);
    return rc;
}

/* MediaPlane.on_rtp's fallbacks for a packet whose SSRC is not in the session's `inbound`: a publisher's RTX stream
 * (`inbound_rtx`), then a simulcast layer or layer RTX stream learnt before (`simulcast_in`). 1 handled, 0 when
 * Python must see it (to learn the SSRC), -1 with an exception set. */
static int forward_other(Engine *self, PyObject *peer, const uint8_t *d, size_t n) {
    PyObject *session = cs_getattr(peer, s_data);
    if (session == NULL)
        return -1;
    if (session == Py_None) {
        Py_DECREF(session);
        return 0;
    }
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    PyObject *key = PyLong_FromUnsignedLong(ssrc);
    PyObject *inbound = NULL, *rtx_table = NULL, *sim_table = NULL, *found = NULL;
    int rc = -1;
    if (key == NULL)
        goto done;
    rtx_table = cs_getattr(session, s_inbound_rtx);
    if (rtx_table == NULL || !PyDict_Check(rtx_table)) {
        PyErr_Clear();
        rc = 0;
        goto done;
    }
    found = PyDict_GetItemWithError(rtx_table, key);
    if (found == NULL && PyErr_Occurred())
        goto done;
    if (found != NULL) {
        Py_INCREF(found);
        long long track_ssrc, rtx_pt;
        if (get_opt_ll(found, s_ssrc, &track_ssrc) < 0 || get_opt_ll(found, s_rtx_pt, &rtx_pt) < 0)
            goto done;
        if (track_ssrc >= 0 && rtx_pt == (d[1] & 0x7F)) {
            inbound = cs_getattr(session, s_inbound);
            if (inbound == NULL)
                goto done;
            rc = PyDict_Check(inbound) ? publisher_rtx(self, inbound, found, d, n) : 0;
            goto done;
        }
        Py_CLEAR(found);
    }
    if (self->simulcast == Py_None) {
        rc = 0;
        goto done;
    }
    sim_table = cs_getattr(session, s_simulcast_in);
    if (sim_table == NULL || !PyDict_Check(sim_table)) {
        PyErr_Clear();
        rc = 0;
        goto done;
    }
    found = PyDict_GetItemWithError(sim_table, key);
    if (found == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    Py_INCREF(found);
    PyObject *st = cs_getattr(found, s_track);
    long long layer;
    int rtx = st != NULL ? get_truth(found, s_rtx) : -1;
    if (st == NULL || rtx < 0 || get_ll(found, s_layer, &layer) < 0) {
        Py_XDECREF(st);
        goto done;
    }
    rc = (rtx ? layer_rtx(self, st, (long)layer, d, n) : layer_media(self, st, (long)layer, d, n)) < 0 ? -1 : 1;
    Py_DECREF(st);
done:
    Py_XDECREF(found);
    Py_XDECREF(inbound);
    Py_XDECREF(rtx_table);
    Py_XDECREF(sim_table);
    Py_XDECREF(key);
    Py_DECREF(session);
    return rc;
}

#endif
