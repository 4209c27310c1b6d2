#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (Chromium for the browser tests). Fails loudly: the
# suite never skips a test because a dependency is missing.
set -euo pipefail
#
# `system-deps.sh build` installs only what building the package needs (the native fast path's libssl-dev), so that
# `make run` on a fresh machine does not pull in the test suite's browser, TURN server and databases.
need=()
# Installs the packages gathered in `need` (root only; otherwise says what to install and fails).
install_needed() {
    if [ ${#need[@]} -eq 0 ]; then return 0; fi
    if [ "$(id -u)" != 0 ]; then
        echo "system-deps: missing Debian packages: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "system-deps: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}
if [ "${1:-}" = build ]; then
    [ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)  # the native path's SRTP on libcrypto (docs/adr/0026)
    command -v gcc >/dev/null 2>&1 || need+=(gcc)
    install_needed
    exit 0
fi
# `system-deps.sh image`: only what `make image` needs (scripts/build-image.sh): a Debian rootfs and an OCI image.
image_deps() {
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
    command -v buildah >/dev/null 2>&1 || need+=(buildah)
}
if [ "${1:-}" = image ]; then
    image_deps
    install_needed
    exit 0
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
# tests/net: network namespaces with NAT (nft), the topology diagrams in docs/networking.md (dot)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# bench/peers/netns.py's "napi" receive steering (the two-hosts topology: veth GRO/NAPI features, ADR 0049)
command -v ethtool >/dev/null 2>&1 || [ -x /usr/sbin/ethtool ] || need+=(ethtool)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
# the diagrams' Helvetica is Liberation Sans: tests/deploy/test_deployment_doc.py re-renders them byte for byte
[ -e /usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf ] || need+=(fonts-liberation2)
# tests/server/test_rtcd_ha.py: serve in a private mount namespace (unshare), a self-signed rtcd certificate (openssl)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# tests/net: the impaired link queues packets to a userspace delayer (xtables NFQUEUE; the kernel has no netem)
[ -x /usr/sbin/iptables ] || need+=(iptables)
# the native fast path links libcrypto (docs/adr/0009, 0026); its fuzz run needs clang's libFuzzer
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
command -v clang-14 >/dev/null 2>&1 || need+=(clang-14)
ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
# tests/pg: a throwaway PostgreSQL server started from the installed binaries (tests/pg_support.py)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# tests/cluster: a real TCP load balancer in front of three nodes (round-robin)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# tests/deploy: the image is built (make image) and run by podman with runc (crun refuses this machine's hybrid
# cgroups; tests/deploy/test_image.py); the systemd units are checked by systemd-analyze verify
image_deps
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# tests/deploy/test_image_docker.py: Docker builds and runs the image too, on a private dockerd the test starts itself
# (its own socket and roots, no bridge, no iptables); the package's system service is not wanted, so where systemd
# runs it is masked before the install starts it (here policy-rc.d already keeps services from starting).
if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
    need+=(docker.io)
    if [ -d /run/systemd/system ] && [ "$(id -u)" = 0 ]; then
        systemctl mask docker.service docker.socket >/dev/null 2>&1 || true
    fi
fi
# tests/cluster: the same cluster behind nginx (deploy/proxy/nginx.conf: WebSocket upgrade, TLS termination)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# tests/deploy: deploy/k8s is rendered by the kustomize built into kubectl (v4+; the machine image carries kubectl
# 1.32 with kustomize v5). Debian's kubernetes-client is 1.20 (kustomize v2: no components), so it would not do.
command -v kubectl >/dev/null 2>&1 || {
    echo "system-deps: kubectl (with kustomize v4 or newer) is missing: tests/deploy render deploy/k8s with it" >&2
    exit 1
}
# tests/loadtest/test_peers_janus.py and bench/peers: Debian's Janus (VideoRoom), the side-by-side peer
command -v janus >/dev/null 2>&1 || need+=(janus)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
install_needed
command -v chromium >/dev/null || { echo "system-deps: chromium still missing after install" >&2; exit 1; }
command -v nft >/dev/null || { echo "system-deps: nft still missing after install" >&2; exit 1; }
[ -e /usr/include/openssl/evp.h ] || { echo "system-deps: libssl-dev still missing after install" >&2; exit 1; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "system-deps: postgresql still missing after install" >&2; exit 1; }
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || { echo "system-deps: haproxy still missing after install" >&2; exit 1; }
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "system-deps: nginx still missing after install" >&2; exit 1; }
