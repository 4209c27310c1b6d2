/* The load tool's receive statistics in C: per-stream RFC 3550 counters and jitter, per-leg first-audio time and
 * delay sums, the engine's delay histogram, read into the Python objects once per report interval. Included once,
 * by _fastpeer.c.
 *
 * Why: updating the Python StreamStats/Histogram objects attribute by attribute (float and int objects made and
 * freed, slot lookups) was most of the native engine's receive cost per packet (issue 13). Here a stream is a plain
 * struct found by (leg key, SSRC) in an open-addressing table; Python makes the StreamStats object when a stream's
 * first packet arrives (its kind and clock come from the payload type), hands it to `Receiver.track`, and from then
 * on the C side owns the counters: `Receiver.sync` writes them into the object (and adds the delay buckets since
 * the last sync into the Histogram), and `forget` does so for a leg that leaves. The rules are those of
 * peer/stats.py (StreamStats.update, StreamStats.sample, Histogram.add) and MediaEngine._handle/_sample_delay;
 * tests/loadtest/test_media_engines_diff.py holds the two to the same counts.
 */
#ifndef CALLSD_FASTPEER_STATS_H
#define CALLSD_FASTPEER_STATS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pyslots.h"
#include "srtp_session.h"

static PyObject *s_first_audio_ns, *s_rx_count, *s_delay, *s_kind, *s_started, *s_base_seq, *s_max_seq, *s_cycles,
    *s_received, *s_jitter, *s_last_transit, *s_clock_khz, *s_sender, *s_first_counter, *s_first_index,
    *s_last_counter, *s_last_index, *s_buckets, *s_count, *s_total, *s_maximum, *s_resolution, *s_audio, *s_rx;

static const uint8_t MAGIC[4] = {'C', 'L', 'T', '1'};

typedef struct {
    uint64_t key;     /* leg key << 32 | SSRC */
    int leg;          /* index into the leg table */
    PyObject *stats;  /* the StreamStats it is read into (strong) */
    int audio, started, dirty;
    double clock_khz, jitter, last_transit;
    long long base_seq, max_seq, cycles, received, sender, first_counter, first_index, last_counter, last_index;
} rx_stream;

typedef struct {
    uint32_t key;      /* the engine's key of the leg: its socket's fd, or its address on a shared port */
    PyObject *leg;     /* strong */
    PyObject *rx;      /* its inbound SrtpSession (strong), for the 1-in-N decrypted stamp */
    long long first_audio_ns, rx_count, delay_count;
    double delay_sum, delay_max; /* since the last sync */
    unsigned long long deferred; /* the drain in which one of its RTP packets went to Python (keep their order) */
    int dirty;
} rx_leg;

/* An open-addressing index from a 64-bit key to an entry's position; rebuilt whole when entries go away. */
typedef struct {
    uint64_t *keys;
    int32_t *at; /* -1: empty */
    size_t mask;
} key_index;

static uint64_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static void index_free(key_index *ix) {
    free(ix->keys);
    free(ix->at);
    ix->keys = NULL;
    ix->at = NULL;
    ix->mask = 0;
}

static int index_reset(key_index *ix, size_t entries) {
    size_t size = 16;
    while (size < 2 * entries + 2)
        size <<= 1;
    uint64_t *keys = malloc(size * sizeof *keys);
    int32_t *at = malloc(size * sizeof *at);
    if (keys == NULL || at == NULL) {
        free(keys);
        free(at);
        PyErr_NoMemory();
        return -1;
    }
    index_free(ix);
    memset(at, 0xff, size * sizeof *at);
    ix->keys = keys;
    ix->at = at;
    ix->mask = size - 1;
    return 0;
}

static int32_t index_get(const key_index *ix, uint64_t key) {
    if (ix->at == NULL)
        return -1;
    for (size_t i = mix64(key) & ix->mask;; i = (i + 1) & ix->mask) {
        if (ix->at[i] < 0)
            return -1;
        if (ix->keys[i] == key)
            return ix->at[i];
    }
}

static void index_put(key_index *ix, uint64_t key, int32_t at) {
    size_t i = mix64(key) & ix->mask;
    while (ix->at[i] >= 0 && ix->keys[i] != key)
        i = (i + 1) & ix->mask;
    ix->keys[i] = key;
    ix->at[i] = at;
}

typedef struct {
    rx_stream *streams;
    rx_leg *legs;
    size_t n_streams, cap_streams, n_legs, cap_legs;
    key_index stream_ix, leg_ix;
    /* the delay histogram since the last sync (the engine's Histogram's buckets and resolution) */
    long long *buckets;
    int32_t *touched; /* indexes of buckets that went from 0 to 1 since the last sync */
    size_t n_buckets, n_touched;
    double resolution, total, maximum;
    long long count;
} rx_tables;

static uint64_t stream_key(uint32_t leg, uint32_t ssrc) { return ((uint64_t)leg << 32) | ssrc; }

static int tables_init(rx_tables *t, PyObject *histogram) {
    double resolution;
    PyObject *v = cs_getattr(histogram, s_resolution);
    if (v == NULL)
        return -1;
    resolution = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (resolution == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *buckets = cs_getattr(histogram, s_buckets);
    if (buckets == NULL)
        return -1;
    Py_ssize_t size = PyList_Check(buckets) ? PyList_GET_SIZE(buckets) : 0;
    Py_DECREF(buckets);
    if (size <= 0 || resolution <= 0) {
        PyErr_SetString(PyExc_TypeError, "the delay Histogram needs a non-empty bucket list and a resolution > 0");
        return -1;
    }
    t->buckets = calloc((size_t)size, sizeof *t->buckets);
    t->touched = malloc((size_t)size * sizeof *t->touched);
    if (t->buckets == NULL || t->touched == NULL)
        return PyErr_NoMemory(), -1;
    t->n_buckets = (size_t)size;
    t->resolution = resolution;
    return index_reset(&t->stream_ix, 0) < 0 || index_reset(&t->leg_ix, 0) < 0 ? -1 : 0;
}

static void tables_free(rx_tables *t) {
    for (size_t i = 0; i < t->n_streams; i++)
        Py_CLEAR(t->streams[i].stats);
    for (size_t i = 0; i < t->n_legs; i++) {
        Py_CLEAR(t->legs[i].leg);
        Py_CLEAR(t->legs[i].rx);
    }
    free(t->streams);
    free(t->legs);
    free(t->buckets);
    free(t->touched);
    index_free(&t->stream_ix);
    index_free(&t->leg_ix);
    memset(t, 0, sizeof *t);
}

static int tables_traverse(rx_tables *t, visitproc visit, void *arg) {
    for (size_t i = 0; i < t->n_streams; i++)
        Py_VISIT(t->streams[i].stats);
    for (size_t i = 0; i < t->n_legs; i++) {
        Py_VISIT(t->legs[i].leg);
        Py_VISIT(t->legs[i].rx);
    }
    return 0;
}

/* -- the per-packet rules ------------------------------------------------------------------------------------ */

/* StreamStats.update: RFC 3550 sequence tracking and interarrival jitter. */
static void stream_update(rx_stream *s, long long seq, long long rtp_ts, double arrival_ms) {
    double transit = arrival_ms * s->clock_khz - (double)rtp_ts;
    s->dirty = 1;
    if (!s->started) {
        s->started = 1;
        s->base_seq = s->max_seq = seq;
        s->last_transit = transit;
        s->received = 1;
        return;
    }
    s->received++;
    long long delta = (seq - s->max_seq) & 0xFFFF;
    if (delta > 0 && delta < 0x8000) {
        if (seq < s->max_seq)
            s->cycles += 0x10000;
        s->max_seq = seq;
    }
    double d = transit - s->last_transit;
    s->last_transit = transit;
    if (d < 0)
        d = -d;
    if (d < 60000 * s->clock_khz) /* a jump of more than a minute is a wrap or a new source, not jitter */
        s->jitter += (d - s->jitter) / 16.0;
}

/* Histogram.add, into the buckets since the last sync. */
static void histogram_add(rx_tables *t, double value) {
    double q = value / t->resolution;
    size_t index = q < 0 ? 0 : (q >= (double)t->n_buckets ? t->n_buckets - 1 : (size_t)q);
    if (t->buckets[index]++ == 0)
        t->touched[t->n_touched++] = (int32_t)index;
    t->count++;
    t->total += value;
    if (value > t->maximum)
        t->maximum = value;
}

/* MediaEngine._sample_delay: decrypt a copy, read the stamp, note the sender's counter and the one-way delay.
 * Returns 1 when the packet did not decrypt (an SRTP error). */
static int sample_delay(rx_tables *t, rx_leg *l, rx_stream *s, const uint8_t *d, size_t n, long long now,
                        uint8_t *plain) {
    if (n > MAX_PACKET)
        return 1;
    memcpy(plain, d, n);
    int len = (int)n;
    if (session_unprotect((SrtpSession *)l->rx, plain, &len) != SRTP_OK)
        return 1;
    size_t off = 12 + 4 * (size_t)(plain[0] & 0x0F);
    if ((plain[0] & 0x10) && (size_t)len >= off + 4)
        off += 4 + 4 * (size_t)((plain[off + 2] << 8) | plain[off + 3]);
    if ((size_t)len < off + 32 || memcmp(plain + off + 12, MAGIC, 4) != 0)
        return 0;
    const uint8_t *p = plain + off + 16;
    unsigned long long sent = 0;
    for (int i = 0; i < 8; i++)
        sent = (sent << 8) | p[i];
    long long counter = ((long long)p[8] << 24) | (p[9] << 16) | (p[10] << 8) | p[11];
    long long sender = ((long long)p[12] << 24) | (p[13] << 16) | (p[14] << 8) | p[15];
    if (sender != s->sender) { /* a new source on this SSRC: start over */
        s->sender = sender;
        s->first_counter = counter;
        s->first_index = s->received;
    }
    s->last_counter = counter;
    s->last_index = s->received;
    double delay_ms = (double)(now - (long long)sent) / 1e6;
    histogram_add(t, delay_ms);
    l->delay_sum += delay_ms;
    if (l->delay_count == 0 || delay_ms > l->delay_max)
        l->delay_max = delay_ms;
    l->delay_count++;
    return 0;
}

/* -- reading the Python objects in, writing the counters out --------------------------------------------------- */

static int stream_read(rx_stream *s, PyObject *st) {
    PyObject *kind = cs_getattr(st, s_kind);
    if (kind == NULL)
        return -1;
    s->audio = PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_audio) == 0;
    Py_DECREF(kind);
    int started = get_truth(st, s_started);
    if (started < 0 || get_double(st, s_clock_khz, &s->clock_khz) < 0 || get_double(st, s_jitter, &s->jitter) < 0 ||
        get_double(st, s_last_transit, &s->last_transit) < 0 || get_ll(st, s_base_seq, &s->base_seq) < 0 ||
        get_ll(st, s_max_seq, &s->max_seq) < 0 || get_ll(st, s_cycles, &s->cycles) < 0 ||
        get_ll(st, s_received, &s->received) < 0 || get_ll(st, s_sender, &s->sender) < 0 ||
        get_ll(st, s_first_counter, &s->first_counter) < 0 || get_ll(st, s_first_index, &s->first_index) < 0 ||
        get_ll(st, s_last_counter, &s->last_counter) < 0 || get_ll(st, s_last_index, &s->last_index) < 0)
        return -1;
    s->started = started;
    return 0;
}

static int stream_write(rx_stream *s) {
    PyObject *st = s->stats;
    if (!s->dirty)
        return 0;
    s->dirty = 0;
    if (cs_setattr(st, s_started, s->started ? Py_True : Py_False) < 0 || set_ll(st, s_base_seq, s->base_seq) < 0 ||
        set_ll(st, s_max_seq, s->max_seq) < 0 || set_ll(st, s_cycles, s->cycles) < 0 ||
        set_ll(st, s_received, s->received) < 0 || set_double(st, s_jitter, s->jitter) < 0 ||
        set_double(st, s_last_transit, s->last_transit) < 0 || set_ll(st, s_sender, s->sender) < 0 ||
        set_ll(st, s_first_counter, s->first_counter) < 0 || set_ll(st, s_first_index, s->first_index) < 0 ||
        set_ll(st, s_last_counter, s->last_counter) < 0 || set_ll(st, s_last_index, s->last_index) < 0)
        return -1;
    return 0;
}

static int leg_write(rx_leg *l) {
    if (!l->dirty)
        return 0;
    l->dirty = 0;
    if (set_ll(l->leg, s_first_audio_ns, l->first_audio_ns) < 0 || set_ll(l->leg, s_rx_count, l->rx_count) < 0)
        return -1;
    if (l->delay_count == 0)
        return 0;
    PyObject *acc = PyObject_GetAttr(l->leg, s_delay);
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
    if (PyList_SetItem(acc, 0, PyFloat_FromDouble(sum + l->delay_sum)) < 0 ||
        PyList_SetItem(acc, 1, PyLong_FromLongLong(count + l->delay_count)) < 0)
        goto done;
    if (l->delay_max > max && PyList_SetItem(acc, 2, PyFloat_FromDouble(l->delay_max)) < 0)
        goto done;
    l->delay_sum = 0;
    l->delay_count = 0;
    rc = 0;
done:
    Py_DECREF(acc);
    return rc;
}

/* Add the buckets and sums since the last sync into the engine's Histogram. */
static int histogram_write(rx_tables *t, PyObject *histogram) {
    if (t->count == 0)
        return 0;
    PyObject *buckets = cs_getattr(histogram, s_buckets);
    if (buckets == NULL)
        return -1;
    int rc = -1;
    if (!PyList_Check(buckets) || (size_t)PyList_GET_SIZE(buckets) != t->n_buckets) {
        PyErr_SetString(PyExc_TypeError, "the delay Histogram's buckets changed size");
        goto done;
    }
    for (size_t i = 0; i < t->n_touched; i++) {
        int32_t b = t->touched[i];
        long long c = PyLong_AsLongLong(PyList_GET_ITEM(buckets, b));
        if (c == -1 && PyErr_Occurred())
            goto done;
        if (PyList_SetItem(buckets, b, PyLong_FromLongLong(c + t->buckets[b])) < 0)
            goto done;
        t->buckets[b] = 0;
    }
    t->n_touched = 0;
    long long count;
    double total, maximum;
    if (get_ll(histogram, s_count, &count) < 0 || get_double(histogram, s_total, &total) < 0 ||
        get_double(histogram, s_maximum, &maximum) < 0 || set_ll(histogram, s_count, count + t->count) < 0 ||
        set_double(histogram, s_total, total + t->total) < 0)
        goto done;
    if (t->maximum > maximum && set_double(histogram, s_maximum, t->maximum) < 0)
        goto done;
    t->count = 0;
    t->total = t->maximum = 0;
    rc = 0;
done:
    Py_DECREF(buckets);
    return rc;
}

static int tables_sync(rx_tables *t, PyObject *histogram) {
    for (size_t i = 0; i < t->n_streams; i++)
        if (stream_write(&t->streams[i]) < 0)
            return -1;
    for (size_t i = 0; i < t->n_legs; i++)
        if (leg_write(&t->legs[i]) < 0)
            return -1;
    return histogram_write(t, histogram);
}

/* -- registering and forgetting ------------------------------------------------------------------------------- */

static int tables_rebuild(rx_tables *t) {
    if (index_reset(&t->leg_ix, t->n_legs) < 0 || index_reset(&t->stream_ix, t->n_streams) < 0)
        return -1;
    for (size_t i = 0; i < t->n_legs; i++)
        index_put(&t->leg_ix, t->legs[i].key, (int32_t)i);
    for (size_t i = 0; i < t->n_streams; i++) {
        index_put(&t->stream_ix, t->streams[i].key, (int32_t)i);
        t->streams[i].leg = index_get(&t->leg_ix, t->streams[i].key >> 32);
    }
    return 0;
}

static int grow(void **items, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? 2 * *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*items, cap2 * size);
    if (p == NULL)
        return PyErr_NoMemory(), -1;
    *items = p;
    *cap = cap2;
    return 0;
}

/* The leg's entry, made (from the Leg object's first_audio_ns and rx_count) on its first tracked stream. */
static int32_t tables_leg(rx_tables *t, uint32_t key, PyObject *leg, PyObject *rx) {
    int32_t at = index_get(&t->leg_ix, key);
    if (at >= 0)
        return at;
    if (grow((void **)&t->legs, &t->cap_legs, t->n_legs + 1, sizeof *t->legs) < 0)
        return -1;
    rx_leg *l = &t->legs[t->n_legs];
    memset(l, 0, sizeof *l);
    l->key = key;
    if (get_ll(leg, s_first_audio_ns, &l->first_audio_ns) < 0 || get_ll(leg, s_rx_count, &l->rx_count) < 0)
        return -1;
    l->leg = Py_NewRef(leg);
    l->rx = Py_NewRef(rx);
    at = (int32_t)t->n_legs++;
    if (2 * (t->n_legs + 1) > t->leg_ix.mask + 1)
        return tables_rebuild(t) < 0 ? -1 : at;
    index_put(&t->leg_ix, key, at);
    return at;
}

static int tables_track(rx_tables *t, uint32_t key, uint32_t ssrc, PyObject *leg, PyObject *stats) {
    if (index_get(&t->stream_ix, stream_key(key, ssrc)) >= 0)
        return 0;
    PyObject *rx = PyObject_GetAttr(leg, s_rx);
    if (rx == NULL)
        return -1;
    if (Py_TYPE(rx) != &SrtpSessionType) {
        Py_DECREF(rx);
        PyErr_SetString(PyExc_TypeError, "track: the leg's inbound session is not the native engine's");
        return -1;
    }
    int32_t leg_at = tables_leg(t, key, leg, rx);
    Py_DECREF(rx);
    if (leg_at < 0 || grow((void **)&t->streams, &t->cap_streams, t->n_streams + 1, sizeof *t->streams) < 0)
        return -1;
    rx_stream *s = &t->streams[t->n_streams];
    memset(s, 0, sizeof *s);
    s->key = stream_key(key, ssrc);
    s->leg = leg_at;
    if (stream_read(s, stats) < 0)
        return -1;
    s->stats = Py_NewRef(stats);
    int32_t at = (int32_t)t->n_streams++;
    if (2 * (t->n_streams + 1) > t->stream_ix.mask + 1)
        return tables_rebuild(t);
    index_put(&t->stream_ix, s->key, at);
    return 0;
}

/* Write everything out, then drop the leg `key` and its streams (the leg closed; its fd may be reused). */
static int tables_forget(rx_tables *t, uint32_t key, PyObject *histogram) {
    if (tables_sync(t, histogram) < 0)
        return -1;
    if (index_get(&t->leg_ix, key) < 0)
        return 0;
    size_t kept = 0;
    for (size_t i = 0; i < t->n_streams; i++) {
        if ((uint32_t)(t->streams[i].key >> 32) == key)
            Py_CLEAR(t->streams[i].stats);
        else
            t->streams[kept++] = t->streams[i];
    }
    t->n_streams = kept;
    kept = 0;
    for (size_t i = 0; i < t->n_legs; i++) {
        if (t->legs[i].key == key) {
            Py_CLEAR(t->legs[i].leg);
            Py_CLEAR(t->legs[i].rx);
        } else {
            t->legs[kept++] = t->legs[i];
        }
    }
    t->n_legs = kept;
    return tables_rebuild(t);
}

#endif
