#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (Chromium for the browser tests). Fails loudly: the
# suite never skips a test because a dependency is missing.
set -euo pipefail
#
# `system-deps.sh build` installs only what building the package needs (the native fast path's libsrtp2-dev), so that
# `make run` on a fresh machine does not pull in the test suite's browser, TURN server and databases.
need=()
if [ "${1:-}" = build ]; then
    [ -e /usr/include/srtp2/srtp.h ] || need+=(libsrtp2-dev)
    [ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)  # the native sender's AES-GCM (srtp_gcm_tx.h)
    command -v gcc >/dev/null 2>&1 || need+=(gcc)
    if [ ${#need[@]} -eq 0 ]; then exit 0; fi
    if [ "$(id -u)" != 0 ]; then
        echo "system-deps: missing Debian packages: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "system-deps: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    exit 0
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
# tests/net: network namespaces with NAT (nft), the topology diagrams in docs/networking.md (dot)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
# tests/server/test_rtcd_ha.py: serve in a private mount namespace (unshare), a self-signed rtcd certificate (openssl)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# tests/net: the impaired link queues packets to a userspace delayer (xtables NFQUEUE; the kernel has no netem)
[ -x /usr/sbin/iptables ] || need+=(iptables)
# the native fast path links libsrtp2 (docs/adr/0009); its fuzz run needs clang's libFuzzer
[ -e /usr/include/srtp2/srtp.h ] || need+=(libsrtp2-dev)
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
command -v clang-14 >/dev/null 2>&1 || need+=(clang-14)
ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
# tests/pg: a throwaway PostgreSQL server started from the installed binaries (tests/pg_support.py)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# tests/cluster: a real TCP load balancer in front of three nodes (round-robin)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing Debian packages: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
command -v chromium >/dev/null || { echo "system-deps: chromium still missing after install" >&2; exit 1; }
command -v nft >/dev/null || { echo "system-deps: nft still missing after install" >&2; exit 1; }
[ -e /usr/include/srtp2/srtp.h ] || { echo "system-deps: libsrtp2-dev still missing after install" >&2; exit 1; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "system-deps: postgresql still missing after install" >&2; exit 1; }
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || { echo "system-deps: haproxy still missing after install" >&2; exit 1; }
