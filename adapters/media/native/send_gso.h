/* Sending a step's queue with UDP GSO where destinations repeat (issue 13). Included once, by _engine.c.
 *
 * The kernel's per-datagram work (UDP/IP output, loopback or driver transmit, delivery) is the largest part of an
 * egress packet once SRTP and the rewrite are in C (docs/performance.md). UDP_SEGMENT (Linux 4.18+) lets one send
 * carry k datagrams of one size to one destination as one buffer through the stack; bench/gso_probe.py measured
 * the kernel CPU per datagram on loopback at about -25 % for k = 2 and -60 % for k = 4.
 *
 * Rules: a run is the queued datagrams to one destination taken in queue order, of equal length, up to
 * GSO_MAX_SEGMENTS and 64 KiB; a datagram of another length ends the run (so no destination ever sees its packets
 * reordered); a run of one is sent as it is. Runs leave in the order of their first datagram, in one sendmmsg.
 * Counting is per datagram, as before. If the kernel refuses a GSO message with anything but "would block" (an
 * old kernel, a device without segmentation support), its datagrams are sent one by one and GSO stays off for the
 * engine. CALLSD_NATIVE_GSO=0 turns it off (the A/B switch of bench/forward_step.py).
 */
#ifndef CALLSD_SEND_GSO_H
#define CALLSD_SEND_GSO_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define GSO_MAX_SEGMENTS 64
#define GSO_MAX_BYTES 65000

typedef struct {
    long long sent, bytes, would_block, errors;
} send_counts;

typedef struct {
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
    int segments[BATCH]; /* datagrams in message i */
    size_t bytes[BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control[BATCH];
} gso_plan;

static gso_plan gso_scratch;

static int same_destination(const struct msghdr *a, const struct msghdr *b) {
    return a->msg_namelen == b->msg_namelen && memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0;
}

/* A number equal for equal destinations (its first 24 bytes and length: all of an IPv4 address and port, and of
 * an IPv6 one but its last four address bytes), which places a destination in gso_flush's table of open runs: the
 * pairwise search it replaces (memcmp of every queued pair) was ~1,600 instructions per egress packet
 * (callgrind, docs/performance.md "Session 6"). */
static uint64_t destination_key(const struct msghdr *m) {
    uint64_t word[3] = {0, 0, 0};
    memcpy(word, m->msg_name, m->msg_namelen < sizeof word ? m->msg_namelen : sizeof word);
    uint64_t mixed = word[0] ^ (word[1] * 0xC2B2AE3D27D4EB4FULL) ^ (word[2] * 0x165667B19E3779F9ULL) ^ m->msg_namelen;
    return mixed * 0x9E3779B97F4A7C15ULL; /* the top bits depend on every byte (the table uses the top 7) */
}

/* sendmmsg over msgs[0..n), retrying EINTR; counts per message with the given datagram counts. */
static void send_plain(int fd, struct mmsghdr *msgs, int n, const int *segments, const size_t *bytes,
                       send_counts *c, int *gso_failed) {
    int i = 0;
    while (i < n) {
        int sent = sendmmsg(fd, &msgs[i], (unsigned)(n - i), MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            int k = segments ? segments[i] : 1;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->would_block += k;
            } else if (k > 1 && gso_failed != NULL) {
                *gso_failed = i; /* the caller resends this message's datagrams one by one */
                return;
            } else {
                c->errors += k;
            }
            i++;
            continue;
        }
        for (int m = i; m < i + sent; m++) {
            c->sent += segments ? segments[m] : 1;
            c->bytes += bytes ? (long long)bytes[m] : (long long)msgs[m].msg_hdr.msg_iov[0].iov_len;
        }
        i += sent;
    }
}

/* Send the queue msgs[0..n) (one iovec each) on fd; with `gso`, runs to one destination go as UDP_SEGMENT sends.
 * Sets *gso to 0 if the kernel refused a segmented send. */
static void gso_flush(int fd, struct mmsghdr *msgs, int n, send_counts *c, int *gso) {
    if (n <= 1 || !*gso) {
        send_plain(fd, msgs, n, NULL, NULL, c, NULL);
        return;
    }
    gso_plan *p = &gso_scratch;
    /* Pass 1, in queue order: each datagram joins the open run of its destination if it fits (same length, under
     * the segment and byte caps), else opens that destination's next run. The same runs, in the same order (of
     * their first datagram), as scanning forward from each run's first datagram, in one pass: `open` maps a
     * destination (by its key, probed linearly, checked by same_destination) to its open run. */
    _Static_assert(2 * BATCH == 128, "the open-run table is indexed by a key's top 7 bits");
    int run_of[BATCH], first[BATCH], open[2 * BATCH];
    size_t size_of[BATCH];
    int out = 0;
    memset(open, -1, sizeof open);
    for (int i = 0; i < n; i++) {
        const struct msghdr *h = &msgs[i].msg_hdr;
        size_t size = h->msg_iov[0].iov_len;
        uint64_t key = destination_key(h);
        unsigned slot = (unsigned)(key >> 57); /* 0..127 == 2 * BATCH - 1 */
        while (open[slot] >= 0 && !same_destination(&msgs[first[open[slot]]].msg_hdr, h))
            slot = (slot + 1) % (2 * BATCH);
        int r = open[slot];
        if (r >= 0 && size_of[r] == size && p->segments[r] < GSO_MAX_SEGMENTS &&
            p->bytes[r] + size <= GSO_MAX_BYTES) {
            p->segments[r]++;
            p->bytes[r] += size;
        } else {
            r = open[slot] = out++;
            first[r] = i;
            size_of[r] = size;
            p->segments[r] = 1;
            p->bytes[r] = size;
        }
        run_of[i] = r;
    }
    if (out == n) { /* no destination repeats: the queue as it stands is the plan (its messages carry no control) */
        send_plain(fd, msgs, n, NULL, NULL, c, NULL);
        return;
    }
    /* Pass 2: each run's datagrams side by side in the iovec array, in queue order, and its message. */
    int next_iov[BATCH];
    for (int r = 0, iov = 0; r < out; r++) {
        next_iov[r] = iov;
        iov += p->segments[r];
    }
    for (int r = 0; r < out; r++) {
        struct msghdr *m = &p->msg[r].msg_hdr;
        *m = msgs[first[r]].msg_hdr;
        m->msg_iov = &p->iov[next_iov[r]];
        m->msg_iovlen = (size_t)p->segments[r];
        m->msg_control = NULL;
        m->msg_controllen = 0;
        if (p->segments[r] > 1) {
            m->msg_control = p->control[r].buf;
            m->msg_controllen = sizeof p->control[r].buf;
            struct cmsghdr *cm = CMSG_FIRSTHDR(m);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)size_of[r];
            memcpy(CMSG_DATA(cm), &segment, sizeof segment);
        }
        p->msg[r].msg_len = 0;
    }
    for (int i = 0; i < n; i++)
        p->iov[next_iov[run_of[i]]++] = msgs[i].msg_hdr.msg_iov[0];
    int start = 0;
    while (start < out) {
        int failed = -1;
        send_plain(fd, &p->msg[start], out - start, &p->segments[start], &p->bytes[start], c, &failed);
        if (failed < 0)
            return;
        /* the kernel refused segmentation: this message's datagrams one by one, and no GSO from now on */
        *gso = 0;
        struct mmsghdr one[GSO_MAX_SEGMENTS];
        struct msghdr *g = &p->msg[start + failed].msg_hdr;
        for (size_t s = 0; s < g->msg_iovlen; s++) {
            memset(&one[s], 0, sizeof one[s]);
            one[s].msg_hdr.msg_name = g->msg_name;
            one[s].msg_hdr.msg_namelen = g->msg_namelen;
            one[s].msg_hdr.msg_iov = &g->msg_iov[s];
            one[s].msg_hdr.msg_iovlen = 1;
        }
        send_plain(fd, one, (int)g->msg_iovlen, NULL, NULL, c, NULL);
        start += failed + 1;
    }
}

#endif
