/* Socket addresses <-> the tuples the socket module uses, and the memo entry the engine keeps per address.
 * Included once, by _engine.c. */
#ifndef CALLSD_ADDRESSES_H
#define CALLSD_ADDRESSES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* Pure memo tables (a numeric address and its tuple never change meaning), direct-mapped, holding strong
 * references: the receive side reuses the tuple of a source address (so the str hash is cached too), the send side
 * reuses the sockaddr parsed from a destination tuple it has seen (compared by identity).
 *
 * The receive side's is sized for a server at capacity too: 200 calls x 8 x 2 have 400 publishers, and with 256
 * entries most RTP datagrams missed and built the tuple again (inet_ntop, the host string and its hash, the
 * tuple compared with the address table's key): 216 instructions per egress packet at 200 calls in callgrind
 * (docs/performance.md, "Issue 13, session 9"). 4096 entries of 48 bytes. */
#define ADDR_CACHE 4096
typedef struct {
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } sa;
    socklen_t len;
    PyObject *tuple;
} addr_memo;

/* The send side's memo is larger and its entries smaller: a server at capacity sends to ~800 peers, and with 256
 * entries most sends missed and parsed the tuple's host string again (inet_pton, ~300 instructions per egress
 * packet at 100 calls, docs/performance.md "Session 6"). 1024 entries of 48 bytes. */
#define TX_ADDR_CACHE 1024
typedef struct {
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } sa;
    socklen_t len;
    PyObject *tuple;
} tx_addr_memo;

/* (host, port) -> sockaddr, as the socket module accepts numeric addresses; 0 on success. */
static int address_to_sockaddr(PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2)
        return -1;
    PyObject *host = PyTuple_GET_ITEM(addr, 0), *port_obj = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port_obj))
        return -1;
    const char *text = PyUnicode_AsUTF8(host);
    long port = PyLong_AsLong(port_obj);
    if (text == NULL || port < 0 || port > 65535) {
        PyErr_Clear();
        return -1;
    }
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        if (PyTuple_GET_SIZE(addr) >= 4) {
            v6->sin6_flowinfo = htonl((uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 2)));
            v6->sin6_scope_id = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 3));
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return -1;
            }
        }
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

/* sockaddr -> the tuple socket.recvfrom returns for it. */
static PyObject *sockaddr_to_address(const struct sockaddr_storage *sa) {
    char text[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
        return Py_BuildValue("(si)", text, (int)ntohs(v4->sin_port));
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
        return Py_BuildValue("(siII)", text, (int)ntohs(v6->sin6_port), (unsigned)ntohl(v6->sin6_flowinfo),
                             (unsigned)v6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static socklen_t sockaddr_len(const struct sockaddr_storage *sa) {
    return sa->ss_family == AF_INET6 ? (socklen_t)sizeof(struct sockaddr_in6) : (socklen_t)sizeof(struct sockaddr_in);
}

static unsigned sockaddr_slot(const struct sockaddr_storage *sa, socklen_t len) {
    const uint8_t *b = (const uint8_t *)sa;
    unsigned h = 2166136261u;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h % ADDR_CACHE;
}

#endif
