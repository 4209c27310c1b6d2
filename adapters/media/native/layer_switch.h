/* LayerSwitcher.on_packet (core/video/simulcast.py, the reference) in C, on the switcher's own slots: which layer
 * a receiver gets, and the receiver's numbering (sequence, timestamp, VP8 picture id and TL0PICIDX) that hides a
 * switch from it. A switch happens only at a key frame of the target layer; the offsets rebase the new layer on
 * the last packet forwarded (LayerSwitcher._rebase). It is a file of its own because it is the one piece of the
 * video step that is a state machine rather than plumbing, and tests/media/test_native_video_diff.py compares it
 * packet for packet with the Python reference. Included once, through simulcast_step.h, after video_attrs.h.
 */
#ifndef CALLSD_LAYER_SWITCH_H
#define CALLSD_LAYER_SWITCH_H

#include <math.h>

#include "video_attrs.h"

static PyObject *s_target, *s_current, *s_stop_current, *s_sw_seq_off, *s_sw_ts_off, *s_sw_pid_off,
    *s_sw_tl0_off, *s_sw_switch_seq, *s_sw_last_seq, *s_sw_last_ts, *s_sw_last_pid, *s_sw_last_tl0, *s_sw_last_ms,
    *s_switches, *s_clock_rate;

/* The LayerSwitcher attribute names, interned once at module load (called by video_intern). */
static int layer_switch_intern(void) {
    struct {
        PyObject **var;
        const char *text;
    } names[] = {
        {&s_target, "target"}, {&s_current, "current"}, {&s_stop_current, "stop_current"},
        {&s_sw_seq_off, "_seq_off"}, {&s_sw_ts_off, "_ts_off"}, {&s_sw_pid_off, "_pid_off"},
        {&s_sw_tl0_off, "_tl0_off"}, {&s_sw_switch_seq, "_switch_seq"}, {&s_sw_last_seq, "_last_seq"},
        {&s_sw_last_ts, "_last_ts"}, {&s_sw_last_pid, "_last_pid"}, {&s_sw_last_tl0, "_last_tl0"},
        {&s_sw_last_ms, "_last_ms"}, {&s_switches, "switches"}, {&s_clock_rate, "clock_rate"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].var = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    return 0;
}

/* Serial-number order (RFC 1982) on `bits`-bit counters: a is ahead of b. */
static int newer(long long a, long long b, int bits) {
    long long diff = (a - b) & ((1LL << bits) - 1);
    return diff > 0 && diff < (1LL << (bits - 1));
}

/* What LayerSwitcher.on_packet reads of a packet (core/video/simulcast.LayerPacket). */
typedef struct {
    long layer;
    long long seq, timestamp;
    int keyframe_start;
    double now, now_ms;
    long long picture_id; /* -1: none */
    int picture_id_bits;
    long long tl0picidx; /* -1: none */
} layer_packet;

/* The receiver's numbering of a forwarded packet (core/video/simulcast.Rewritten). */
typedef struct {
    long long seq, timestamp, picture_id, tl0picidx;
    int switched;
} rewritten;

/* LayerSwitcher.on_packet on the switcher's own slots: 1 (forwarded, `out` set), 0 (not), -1 on failure. */
static int switch_packet(PyObject *sw, const layer_packet *p, rewritten *out) {
    long long current, target, switch_seq, seq_off, ts_off, pid_off, tl0_off, switches;
    if (get_opt_ll(sw, s_current, &current) < 0 || get_ll(sw, s_target, &target) < 0 ||
        get_ll(sw, s_sw_switch_seq, &switch_seq) < 0 || get_ll(sw, s_sw_seq_off, &seq_off) < 0 ||
        get_ll(sw, s_sw_ts_off, &ts_off) < 0 || get_ll(sw, s_sw_pid_off, &pid_off) < 0 ||
        get_ll(sw, s_sw_tl0_off, &tl0_off) < 0)
        return -1;
    int switched = 0;
    if (p->layer != current) {
        if (p->layer != target || !p->keyframe_start)
            return 0;
        /* _rebase */
        long long last_seq, last_ts, last_pid, last_tl0;
        double last_ms;
        long long clock_rate;
        if (get_ll(sw, s_switches, &switches) < 0 || get_opt_ll(sw, s_sw_last_seq, &last_seq) < 0)
            return -1;
        switch_seq = p->seq;
        if (last_seq < 0) {
            seq_off = ts_off = pid_off = tl0_off = 0;
        } else {
            if (get_ll(sw, s_sw_last_ts, &last_ts) < 0 || get_opt_ll(sw, s_sw_last_pid, &last_pid) < 0 ||
                get_opt_ll(sw, s_sw_last_tl0, &last_tl0) < 0 || get_double(sw, s_sw_last_ms, &last_ms) < 0 ||
                get_ll(sw, s_clock_rate, &clock_rate) < 0)
                return -1;
            seq_off = (last_seq + 1 - p->seq) & 0xFFFF;
            double elapsed = nearbyint((p->now_ms - last_ms) * (double)clock_rate / 1000); /* round(): ties even */
            long long el = elapsed < 1 ? 1 : (long long)elapsed;
            ts_off = (last_ts + el - p->timestamp) & 0xFFFFFFFFLL;
            if (p->picture_id >= 0 && last_pid >= 0)
                pid_off = last_pid + 1 - p->picture_id;
            if (p->tl0picidx >= 0 && last_tl0 >= 0)
                tl0_off = last_tl0 + 1 - p->tl0picidx;
        }
        if (set_ll(sw, s_switches, switches + 1) < 0 || set_ll(sw, s_current, p->layer) < 0 ||
            set_ll(sw, s_sw_switch_seq, switch_seq) < 0 || set_ll(sw, s_sw_seq_off, seq_off) < 0 ||
            set_ll(sw, s_sw_ts_off, ts_off) < 0 || set_ll(sw, s_sw_pid_off, pid_off) < 0 ||
            set_ll(sw, s_sw_tl0_off, tl0_off) < 0)
            return -1;
        switched = 1;
    } else if (newer(switch_seq, p->seq, 16)) {
        return 0; /* older than the key frame this layer started with */
    } else {
        int stop = get_truth(sw, s_stop_current);
        if (stop < 0)
            return -1;
        if (stop && target != current)
            return 0; /* moving down for want of capacity */
    }
    out->seq = (p->seq + seq_off) & 0xFFFF;
    out->timestamp = (p->timestamp + ts_off) & 0xFFFFFFFFLL;
    out->picture_id = p->picture_id >= 0 ? (p->picture_id + pid_off) & ((1LL << p->picture_id_bits) - 1) : -1;
    out->tl0picidx = p->tl0picidx >= 0 ? (p->tl0picidx + tl0_off) & 0xFF : -1;
    out->switched = switched;
    long long last_seq, last_ts;
    if (get_opt_ll(sw, s_sw_last_seq, &last_seq) < 0)
        return -1;
    if (last_seq < 0 || newer(out->seq, last_seq, 16)) {
        if (set_ll(sw, s_sw_last_seq, out->seq) < 0 || set_double(sw, s_sw_last_ms, p->now_ms) < 0 ||
            get_ll(sw, s_sw_last_ts, &last_ts) < 0)
            return -1;
        if ((newer(out->timestamp, last_ts, 32) || switched) && set_ll(sw, s_sw_last_ts, out->timestamp) < 0)
            return -1;
        if (out->picture_id >= 0 && set_ll(sw, s_sw_last_pid, out->picture_id) < 0)
            return -1;
        if (out->tl0picidx >= 0 && set_ll(sw, s_sw_last_tl0, out->tl0picidx) < 0)
            return -1;
    }
    return 1;
}

#endif
