/* The least an SFU can do per egress packet on this machine: a C forwarder with no framework at all.
 *
 * Why this exists: issue 13 asks for <= 4 us of server CPU per egress packet all-in. What part of that any user-space
 * SFU pays to the kernel and to the cipher on this host decides whether the target is a matter of our code or of the
 * machine. This program is that bound, measured: it does only what an audio SFU cannot avoid per packet, with the
 * capacity bench's shape (calls x 8 users x 2 talkers, 50 packets/s per talker, ~170-byte packets):
 *
 *   forward: recvmmsg a batch of ingress packets; per packet, AES-128-GCM open (tag checked) with the talker's key;
 *            per receiver of the call (7), a copy with the receiver's SSRC and sequence, AES-128-GCM seal with the
 *            receiver's key (one EVP context each, as callsd keeps one per session), queued into a sendmmsg batch of
 *            64 to the receiver's own loopback address. Its getrusage over a steady window, divided by the egress
 *            packets, is the figure.
 *   sink:    the load tool's side: one wildcard socket (every receiver a loopback address of its own, as the shared
 *            load-tool engine), IP_PKTINFO and SO_TIMESTAMPNS on (so loopback delivery costs the sender what it costs
 *            callsd under the load tool), drained with recvmmsg; it also sends the talkers' packets, paced in 20 ms
 *            ticks. It counts what arrives, for the loss.
 *
 * No routing tables, no RTCP, no timers besides the sink's tick, no Python: whatever callsd spends above this figure
 * is its own. Built by bench/egress_floor.py with the system compiler and libcrypto (OpenSSL 3, as the native
 * extension); its cipher is the native path's own (adapters/media/native/srtp_keys.h: srtp_gcm on a keyed context).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../adapters/media/native/srtp_keys.h"

#define BATCH 64
#define HDR 20     /* RTP header 12 + one-byte extension block 8 (audio level + mid) */
#define PAYLOAD 140
#define TAG 16
#define WIRE (HDR + PAYLOAD + TAG)
#define USERS 8
#define TALKERS 2

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static const uint8_t KEY[16] = "callsd-floor-key", SALT[12] = "floor-salt!";

/* One keyed context: callsd's own (srtp_keys.h, the native path's SRTP), so the floor pays exactly its cipher. */
static srtp_keys *keyed(void) {
    srtp_keys *k = calloc(1, sizeof *k);
    if (!k || srtp_keys_set(k, 1, KEY, SALT, NULL) < 0) die("srtp_keys_set");
    return k;
}

static void iv_of(const srtp_keys *k, const unsigned char *hdr, uint8_t iv[12]) {
    memcpy(iv, k->salt, 12);
    for (int i = 0; i < 4; i++) iv[2 + i] ^= hdr[8 + i]; /* SSRC */
    iv[10] ^= hdr[2];
    iv[11] ^= hdr[3]; /* sequence (ROC 0) */
}

/* AEAD seal of buf[0..HDR+PAYLOAD) in place, tag appended: RFC 7714's layout (header as AAD). 1 or 0. */
static int seal(srtp_keys *k, unsigned char *buf) {
    uint8_t iv[12];
    iv_of(k, buf, iv);
    return srtp_gcm(k, 1, iv, buf, HDR, NULL, 0, buf + HDR, PAYLOAD, buf + HDR + PAYLOAD) == SRTP_OK;
}

static int open_(srtp_keys *k, unsigned char *buf, int len) {
    uint8_t iv[12];
    if (len != WIRE) return 0;
    iv_of(k, buf, iv);
    return srtp_gcm(k, 0, iv, buf, HDR, NULL, 0, buf + HDR, PAYLOAD, buf + HDR + PAYLOAD) == SRTP_OK;
}

static int udp_socket(uint32_t host, int rcvbuf) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (s < 0) die("socket");
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host), .sin_port = 0};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    return s;
}

static int port_of(int s) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

/* Receiver r's address: base + r + 1. The default base, 127.1.0.0, makes every receiver a loopback address of its own,
 * as the shared load-tool engine hands its users addresses; another base (a dummy device's network in a namespace)
 * takes the delivery out and leaves the send path alone. */
static uint32_t receiver_base = 0x7f010000u;
static uint32_t receiver_host(int r) { return receiver_base + (uint32_t)r + 1; }

static void wait_readable(int s, int ms) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    poll(&p, 1, ms);
}

static int forward(int calls, int sink_port, double warmup, double seconds, int crypto) {
    int receivers = calls * USERS;
    /* On loopback, a loopback socket; towards another network (a namespace of the bench's own), the wildcard, since
     * a socket bound to 127.0.0.1 cannot send off the loopback device. */
    int s = udp_socket(receiver_base >> 24 == 127 ? 0x7f000001u : 0, 16 << 20);
    printf("%d\n", port_of(s));
    fflush(stdout);
    srtp_keys **tx = calloc(receivers, sizeof *tx);
    srtp_keys **rx = calloc(receivers, sizeof *rx);
    uint16_t *seq = calloc(receivers, sizeof *seq);
    struct sockaddr_in *dest = calloc(receivers, sizeof *dest);
    for (int r = 0; r < receivers; r++) {
        tx[r] = keyed();
        rx[r] = keyed();
        dest[r] = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(receiver_host(r)),
                                       .sin_port = htons(sink_port)};
    }
    static unsigned char in[BATCH][2048], out[BATCH][WIRE];
    struct mmsghdr inm[BATCH], outm[BATCH];
    struct iovec iniov[BATCH], outiov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iniov[i] = (struct iovec){in[i], sizeof in[i]};
        inm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iniov[i], .msg_iovlen = 1}};
        outiov[i] = (struct iovec){out[i], WIRE};
        outm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &outiov[i], .msg_iovlen = 1, .msg_namelen = sizeof dest[0]}};
    }
    long ingress = 0, egress = 0, bad = 0, send_fail = 0, e0 = 0, i0 = 0;
    int queued = 0;
    double started = 0, u0 = 0, s0 = 0, u1 = 0, s1 = 0, t0 = 0;
    int measuring = 0;
    int done = 0;
    while (!done) {
        wait_readable(s, 100);
        for (int batches = 0;; batches++) {
            /* The window's clock is read between batches too, so a saturated drain (one that never empties the
             * socket) starts and ends its window on time. Batches are whole: egress is 7 x ingress in the window. */
            if ((batches & 15) == 0) {
                double t = now_s();
                if (started == 0 && ingress > 0) started = t;
                if (started && !measuring && t - started >= warmup) {
                    cpu_s(&u0, &s0);
                    e0 = egress + queued, i0 = ingress, t0 = t, measuring = 1;
                }
                if (measuring && t - t0 >= seconds) {
                    done = 1;
                    break;
                }
            }
            int n = recvmmsg(s, inm, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0) break;
            for (int i = 0; i < n; i++) {
                unsigned char *p = in[i];
                int len = (int)inm[i].msg_len;
                ingress++;
                uint32_t ssrc = ((uint32_t)p[8] << 24) | (p[9] << 16) | (p[10] << 8) | p[11];
                int talker = (int)(ssrc - 1); /* receiver index of the talker */
                if (talker < 0 || talker >= receivers || (crypto && !open_(rx[talker], p, len))) {
                    bad++;
                    continue;
                }
                int call = talker / USERS;
                for (int r = call * USERS; r < (call + 1) * USERS; r++) {
                    if (r == talker) continue;
                    unsigned char *o = out[queued];
                    memcpy(o, p, HDR + PAYLOAD);
                    uint16_t q = ++seq[r];
                    o[2] = q >> 8, o[3] = q & 0xff;
                    uint32_t rs = 0x10000000u + (uint32_t)r;
                    o[8] = rs >> 24, o[9] = rs >> 16, o[10] = rs >> 8, o[11] = rs;
                    if (crypto && !seal(tx[r], o)) die("seal");
                    outm[queued].msg_hdr.msg_name = &dest[r];
                    if (++queued == BATCH) {
                        int m = sendmmsg(s, outm, queued, 0);
                        if (m < queued) send_fail += queued - (m < 0 ? 0 : m);
                        egress += queued;
                        queued = 0;
                    }
                }
            }
        }
        if (queued) {
            int m = sendmmsg(s, outm, queued, 0);
            if (m < queued) send_fail += queued - (m < 0 ? 0 : m);
            egress += queued;
            queued = 0;
        }
    }
    cpu_s(&u1, &s1);
    long eg = egress - e0;
    seconds = now_s() - t0; /* the window as it ran: a saturated drain overruns it */
    if (eg <= 0) eg = 1;
    printf("{\"calls\": %d, \"crypto\": %d, \"seconds\": %.3f, \"ingress\": %ld, \"egress\": %ld, "
           "\"egress_per_s\": %.0f, \"user_us_per_egress\": %.4f, \"sys_us_per_egress\": %.4f, "
           "\"us_per_egress_packet\": %.4f, \"cpu_share\": %.4f, \"bad\": %ld, \"send_fail\": %ld, "
           "\"egress_total\": %ld}\n",
           calls, crypto, seconds, ingress - i0, eg, eg / seconds, (u1 - u0) * 1e6 / eg, (s1 - s0) * 1e6 / eg,
           ((u1 - u0) + (s1 - s0)) * 1e6 / eg, ((u1 - u0) + (s1 - s0)) / seconds, bad, send_fail, egress);
    return 0;
}

static int sink(int calls, double seconds, int crypto, uint32_t forwarder) {
    int receivers = calls * USERS;
    int s = udp_socket(0, 32 << 20);
    int one = 1;
    setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    printf("%d\n", port_of(s));
    fflush(stdout);
    int fport;
    if (scanf("%d", &fport) != 1) die("forwarder port");
    struct sockaddr_in fwd = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(forwarder), .sin_port = htons(fport)};
    int talkers = calls * TALKERS;
    srtp_keys *ctx = keyed();
    static unsigned char in[BATCH][2048], ctl[BATCH][128];
    struct mmsghdr inm[BATCH];
    struct iovec iniov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iniov[i] = (struct iovec){in[i], sizeof in[i]};
        inm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iniov[i], .msg_iovlen = 1, .msg_control = ctl[i]}};
    }
    unsigned char (*pkt)[WIRE] = calloc(talkers, WIRE);
    struct mmsghdr *outm = calloc(talkers, sizeof *outm);
    struct iovec *outiov = calloc(talkers, sizeof *outiov);
    uint16_t *tseq = calloc(talkers, sizeof *tseq);
    long sent = 0, received = 0;
    double u0, s0, u1, s1;
    cpu_s(&u0, &s0);
    double start = now_s(), next = start;
    while (now_s() - start < seconds) {
        double t = now_s();
        if (t >= next) { /* one 20 ms tick: every talker's next packet */
            for (int k = 0; k < talkers; k++) {
                int talker = (k / TALKERS) * USERS + (k % TALKERS);
                unsigned char *p = pkt[k];
                memset(p, 0, WIRE);
                p[0] = 0x90, p[1] = 111;
                uint16_t q = ++tseq[k];
                p[2] = q >> 8, p[3] = q & 0xff;
                uint32_t ssrc = (uint32_t)talker + 1;
                p[8] = ssrc >> 24, p[9] = ssrc >> 16, p[10] = ssrc >> 8, p[11] = ssrc;
                p[12] = 0xbe, p[13] = 0xde, p[15] = 1, p[16] = 0x10, p[17] = 0x9e;
                if (crypto && !seal(ctx, p)) die("seal");
                outiov[k] = (struct iovec){p, WIRE};
                outm[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &outiov[k], .msg_iovlen = 1, .msg_name = &fwd,
                                                       .msg_namelen = sizeof fwd}};
            }
            for (int k = 0; k < talkers; k += BATCH) {
                int n = talkers - k < BATCH ? talkers - k : BATCH;
                int m = sendmmsg(s, outm + k, n, 0);
                if (m > 0) sent += m;
            }
            next += 0.020;
            if (next < t - 0.1) next = t; /* a starved sink skips the ticks it missed instead of bursting them */
        }
        int ms = (int)((next - now_s()) * 1000);
        wait_readable(s, ms < 0 ? 0 : ms);
        int n;
        do { /* at least one batch per loop, then until the next tick is due: a busy sink still paces its talkers */
            for (int i = 0; i < BATCH; i++) inm[i].msg_hdr.msg_controllen = sizeof ctl[i];
            n = recvmmsg(s, inm, BATCH, MSG_DONTWAIT, NULL);
            if (n > 0) received += n;
        } while (n == BATCH && now_s() < next);
    }
    cpu_s(&u1, &s1); /* the whole run's: in two namespaces with RPS, the receive path it pays on its own CPU */
    printf("{\"sent\": %ld, \"received\": %ld, \"receivers\": %d, \"user_s\": %.4f, \"sys_s\": %.4f, "
           "\"seconds\": %.3f}\n", sent, received, receivers, u1 - u0, s1 - s0, now_s() - start);
    return 0;
}

int main(int argc, char **argv) {
    if (srtp_keys_global_init() < 0) die("srtp_keys_global_init"); /* picks the cheapest IV path, as the engine does */
    struct in_addr base;
    if (argc >= 8 && inet_pton(AF_INET, argv[7], &base) == 1) receiver_base = ntohl(base.s_addr);
    if (argc >= 6 && !strcmp(argv[1], "forward"))
        return forward(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), atof(argv[5]), argc > 6 ? atoi(argv[6]) : 1);
    struct in_addr forwarder = {.s_addr = htonl(0x7f000001u)}; /* the sink's talkers send to it: loopback, or the
                                                                  * forwarder's namespace's address across a veth */
    if (argc >= 6 && !strcmp(argv[1], "sink") && inet_pton(AF_INET, argv[5], &forwarder) != 1) die("forwarder");
    if (argc >= 4 && !strcmp(argv[1], "sink"))
        return sink(atoi(argv[2]), atof(argv[3]), argc > 4 ? atoi(argv[4]) : 1, ntohl(forwarder.s_addr));
    fprintf(stderr, "usage: egress_floor forward CALLS SINK_PORT WARMUP SECONDS [CRYPTO [RECEIVER_BASE]]\n"
                    "       egress_floor sink CALLS SECONDS [CRYPTO [FORWARDER_ADDRESS]]\n");
    return 2;
}
