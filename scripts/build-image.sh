#!/usr/bin/env bash
# `make image`: the callsd container image from Debian packages and the callsd wheel, with no registry at all
# (no base image can be pulled on these machines). Root is needed (debootstrap, chroot, buildah's storage).
#
#   1. runtime base: `debootstrap --variant=minbase` of a pinned suite with the runtime packages only (python3,
#      libsrtp2-1, ca-certificates), cached as a tarball keyed by suite + package list + this recipe's version;
#   2. build root: a throwaway copy of that base plus gcc, python3-dev and libsrtp2-dev (cached the same way); the
#      wheel is built *there*, so the native extension links the image's own Python and libsrtp2, and installed into
#      a venv at /opt/callsd with the runtime dependencies pinned to the versions the test suite ran (pip freeze of
#      .venv); pip, setuptools and wheel are then removed from the venv;
#   3. runtime rootfs: a clean copy of the base + that venv + user callsd (uid 10001), trimmed (docs, man pages,
#      apt lists), every mtime clamped to SOURCE_DATE_EPOCH (the last commit's time), tarred in name order;
#   4. `buildah build` of deploy/container/Containerfile (FROM scratch, ADD of that tarball, user, entrypoint, ports),
#      committed with the same timestamp, pushed to build/image/callsd-image.oci.tar (oci-archive).
#
# Outputs (build/image/): rootfs.tar, callsd-*.whl, callsd-image.oci.tar, image.env (tag, sizes, build time).
# Cache: $CALLSD_IMAGE_CACHE (default ~/.cache/callsd-image): base tarballs, downloaded .debs, a wheelhouse.
# A fresh machine builds everything from nothing; a warm cache rebuilds only steps 2b-4.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
started=$(date +%s)
step() { printf 'build-image: [%3ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

suite=${CALLSD_IMAGE_SUITE:-bookworm}  # pinned: the image's Python is this suite's python3 (3.11 for bookworm)
mirror=${CALLSD_IMAGE_MIRROR:-http://deb.debian.org/debian}
cache=${CALLSD_IMAGE_CACHE:-${HOME:-/root}/.cache/callsd-image}
out=$here/build/image
python=${PYTHON:-$here/.venv/bin/python}
recipe=3  # bump when the base recipe below changes: old cached bases are then unused
runtime_pkgs=(python3 libsrtp2-1 ca-certificates)
build_pkgs=(python3-venv python3-dev gcc libc6-dev libsrtp2-dev)
uid=10001
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)
tag=${CALLSD_IMAGE_TAG:-localhost/callsd:$version}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

# What the wheel is built from, and the image's own recipe: their digest names a build (image.env), so the smoke
# test can tell a stale image from a current one (`build-image.sh --source-digest`).
wheel_sources=(pyproject.toml setup.py README.md core adapters app peer)
recipe_files=(scripts/build-image.sh deploy/container/Containerfile)
source_files() {  # NUL-separated, sorted, tracked or new (not ignored), present in the work tree
    git ls-files -z --cached --others --exclude-standard -- "${wheel_sources[@]}" "${recipe_files[@]}" \
        | sort -z -u | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
}
source_digest() { source_files | xargs -0 sha1sum | sha1sum | cut -c1-16; }
if [ "${1:-}" = --source-digest ]; then
    source_digest
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "build-image: run as root (debootstrap, chroot, buildah)" >&2; exit 1; }
for tool in debootstrap buildah unshare chroot; do
    command -v "$tool" >/dev/null || { echo "build-image: $tool missing: bash scripts/system-deps.sh" >&2; exit 1; }
done
mkdir -p "$cache/debs" "$cache/wheels" "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/callsd-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs a command chrooted into ROOT in a private mount namespace: /dev, /proc, DNS, CAs and the wheelhouse are mounted
# for it and vanish with the namespace, so nothing leaks onto the host even when the build fails.
in_root() {
    local root=$1
    shift
    unshare --mount --propagation private --fork -- bash -euc '
        root=$1; cache=$2; shift 2
        mount --rbind /dev "$root/dev"
        mount -t proc proc "$root/proc"
        touch "$root/etc/resolv.conf" && mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
        mkdir -p "$root/wheelhouse" && mount --bind "$cache/wheels" "$root/wheelhouse"
        # the host'"'"'s CA bundle (it may hold the egress proxy'"'"'s CA), for pip and apt in the build only
        if [ -e "$root/etc/ssl/certs/ca-certificates.crt" ]; then
            mount --bind /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
        fi
        exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
            SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" DEBIAN_FRONTEND=noninteractive "$@"' _ "$root" "$cache" "$@"
}

# A reproducible tarball of a directory: names sorted, numeric owners, mtimes clamped, no atime/ctime.
tar_dir() {
    tar --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" -cf "$2" .
}

# 1. the runtime base (cached)
base_key=$(printf '%s\n' "$recipe" "$suite" "$mirror" "${runtime_pkgs[@]}" | sha1sum | cut -c1-12)
base=$cache/base-$suite-$base_key.tar
if [ ! -s "$base" ]; then
    step "debootstrap $suite (minbase + ${runtime_pkgs[*]}); cached as $base"
    debootstrap --variant=minbase --include="$(IFS=,; echo "${runtime_pkgs[*]}")" --cache-dir="$cache/debs" \
        "$suite" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log"; exit 1; }
    rm -rf "$work/base/var/lib/apt/lists/"* "$work/base/var/cache/apt/"*.bin "$work/base/var/log/"* \
        "$work/base/var/cache/apt/archives/"*.deb
    tar_dir "$work/base" "$work/base.tar"
    mv "$work/base.tar" "$base"
    rm -rf "$work/base"
else
    step "runtime base from cache: $base"
fi

# 2a. the build root: base + compiler and headers (cached)
build_key=$(printf '%s\n' "$base_key" "${build_pkgs[@]}" | sha1sum | cut -c1-12)
build_base=$cache/build-$suite-$build_key.tar
mkdir -p "$work/buildroot"
if [ ! -s "$build_base" ]; then
    step "build root: apt-get install ${build_pkgs[*]}; cached as $build_base"
    tar -xf "$base" -C "$work/buildroot"
    mkdir -p "$work/buildroot/var/cache/apt/archives"
    in_root "$work/buildroot" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        ${build_pkgs[*]} >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*"
    tar_dir "$work/buildroot" "$work/build.tar"
    mv "$work/build.tar" "$build_base"
else
    step "build root from cache: $build_base"
    tar -xf "$build_base" -C "$work/buildroot"
fi

# 2b. the wheel, built inside the build root, and the venv the image will carry
step "wheel and venv inside the build root (against its own python3 and libsrtp2)"
mkdir -p "$work/buildroot/src"
source_files | tar --null -T - -cf - | tar -xf - -C "$work/buildroot/src"
: >"$work/buildroot/constraints.txt"
if [ -x "$python" ]; then  # the versions the test suite ran against (the venv's own callsd is editable: excluded)
    "$python" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^callsd' >"$work/buildroot/constraints.txt" || true
fi
if [ -s "$work/buildroot/constraints.txt" ]; then
    step "dependencies pinned to the versions installed in $python's environment"
else
    step "no .venv to pin from: the newest dependency versions pyproject.toml allows (see /opt/callsd/requirements.lock)"
fi
# Downloads land in a wheelhouse in the cache (pip's own HTTP cache is not used: responses through this machine's
# egress proxy come back uncacheable); installs come from it with --no-index.
in_root "$work/buildroot" sh -euc '
    pip="/opt/callsd/bin/pip -q --disable-pip-version-check"
    python3 -m venv /opt/callsd
    # from the wheelhouse alone when it has everything (no index queries), else fill it from the index first
    from_wheelhouse() { $pip install --no-index --find-links /wheelhouse "$@" 2>/dev/null; }
    from_wheelhouse --upgrade "setuptools>=77" wheel || {
        $pip download -d /wheelhouse --find-links /wheelhouse "setuptools>=77" wheel
        from_wheelhouse --upgrade "setuptools>=77" wheel; }
    $pip wheel --no-deps --no-build-isolation -w /dist /src
    from_wheelhouse -c /constraints.txt /dist/callsd-*.whl || {
        $pip download -d /wheelhouse --find-links /wheelhouse -c /constraints.txt /dist/callsd-*.whl
        rm -f /wheelhouse/callsd-*.whl
        from_wheelhouse -c /constraints.txt /dist/callsd-*.whl; }
    $pip freeze >/opt/callsd/requirements.lock
    $pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true
    rm -f /opt/callsd/bin/pip* /opt/callsd/bin/easy_install* /opt/callsd/bin/wheel'
rm -f "$out"/callsd-*.whl
cp "$work/buildroot/dist/"callsd-*.whl "$out/"

# 3. the runtime rootfs: a clean base + the venv + the user, trimmed
step "runtime rootfs"
mkdir -p "$work/rootfs"
tar -xf "$base" -C "$work/rootfs"
cp -a "$work/buildroot/opt/callsd" "$work/rootfs/opt/callsd"
rm -rf "$work/buildroot"
ln -sf /opt/callsd/bin/callsd "$work/rootfs/usr/local/bin/callsd"
echo "callsd:x:$uid:$uid:callsd:/var/lib/callsd:/usr/sbin/nologin" >>"$work/rootfs/etc/passwd"
echo "callsd:x:$uid:" >>"$work/rootfs/etc/group"
echo "callsd:!:::::::" >>"$work/rootfs/etc/shadow"
install -d -o "$uid" -g "$uid" -m 0750 "$work/rootfs/var/lib/callsd"
install -d -m 0755 "$work/rootfs/etc/callsd"
(cd "$work/rootfs" && rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
    usr/share/lintian usr/share/bug var/cache/apt/archives/*.deb var/cache/debconf/*-old var/lib/dpkg/*-old \
    var/cache/ldconfig/aux-cache \
    var/log/* tmp/* root/.cache etc/machine-id dev/* proc/* sys/* run/*)
: >"$work/rootfs/etc/machine-id"
chmod 1777 "$work/rootfs/tmp"
find "$work/rootfs" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar_dir "$work/rootfs" "$out/rootfs.tar"
rm -rf "$work/rootfs"

# 4. the OCI image from deploy/container/Containerfile, and an oci-archive of it for inspection and the smoke test
step "buildah build -f deploy/container/Containerfile -> $tag"
previous=$(buildah images --quiet --no-trunc "$tag" 2>/dev/null | head -1 || true)
buildah build --quiet --layers=false --timestamp "$SOURCE_DATE_EPOCH" --format oci \
    --build-arg VERSION="$version" -f deploy/container/Containerfile -t "$tag" "$out" >"$work/buildah.log" 2>&1 \
    || { cat "$work/buildah.log"; exit 1; }
if [ -n "$previous" ] && [ "$previous" != "$(buildah images --quiet --no-trunc "$tag" | head -1)" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true  # the image this tag named before: do not pile them up
fi
rm -f "$out/callsd-image.oci.tar"
buildah push --quiet "$tag" "oci-archive:$out/callsd-image.oci.tar:$tag" >/dev/null
elapsed=$(( $(date +%s) - started ))
uncompressed=$(buildah inspect --type image --format '{{.Docker.Size}}' "$tag" 2>/dev/null || echo 0)
[ "$uncompressed" -gt 0 ] 2>/dev/null || uncompressed=$(stat -c %s "$out/rootfs.tar")
compressed=$(stat -c %s "$out/callsd-image.oci.tar")  # its one layer is gzip-compressed: what a registry stores
cat >"$out/image.env" <<EOF
IMAGE_TAG=$tag
IMAGE_SOURCE_DIGEST=$(source_digest)
IMAGE_ARCHIVE=build/image/callsd-image.oci.tar
IMAGE_SUITE=$suite
IMAGE_UID=$uid
IMAGE_UNCOMPRESSED_BYTES=$uncompressed
IMAGE_COMPRESSED_BYTES=$compressed
IMAGE_BUILD_SECONDS=$elapsed
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH
EOF
step "done: $tag, $(( uncompressed / 1048576 )) MiB uncompressed, $(( compressed / 1048576 )) MiB gzip," \
    "in ${elapsed}s; oci-archive: build/image/callsd-image.oci.tar"
