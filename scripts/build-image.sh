#!/usr/bin/env bash
# `make image`: the callsd container image from Debian packages and the callsd wheel, with no registry at all
# (no base image can be pulled on these machines). Root is needed (debootstrap, chroot, buildah's storage).
#
#   1. runtime base: `debootstrap --variant=minbase` of a pinned suite with the runtime packages only (python3,
#      libssl3, ca-certificates), cached as a directory keyed by suite + package list + this recipe's version;
#   2. build root: an overlay of gcc, python3-dev and libssl-dev (a cached layer, keyed the same way) on that base;
#      the wheel is built *there*, so the native extension links the image's own Python and libcrypto, and installed
#      into a venv at /opt/callsd with the runtime dependencies pinned to the versions the test suite ran (pip freeze
#      of .venv); pip, setuptools and wheel are then removed from the venv;
#   3. runtime rootfs: an overlay on the clean base + that venv + user callsd (uid 10001), trimmed (docs, man pages,
#      apt lists), tarred in name order with every mtime clamped to SOURCE_DATE_EPOCH (the last commit's time);
#   4. `buildah build` of deploy/container/Containerfile (FROM scratch, ADD of that tarball, user, entrypoint, ports),
#      committed with the same timestamp, pushed to build/image/callsd-image.oci.tar (oci-archive).
#
# Outputs (build/image/): rootfs.tar, callsd-*.whl, callsd-image.oci.tar, image.env (tag, sizes, build time).
# Cache: $CALLSD_IMAGE_CACHE (default ~/.cache/callsd-image): the base and build layer, downloaded .debs, a
# wheelhouse. A fresh machine builds everything from nothing; a warm cache rebuilds only steps 2b-4, and no step
# unpacks or copies a root filesystem (overlayfs), so a rebuild costs the wheel, one tar and buildah.
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
recipe=6  # bump when the base recipe below changes: old cached bases are then unused
runtime_pkgs=(python3 libssl3 ca-certificates)  # libssl3: the native path's SRTP (libcrypto, docs/adr/0026)
build_pkgs=(python3-venv python3-dev gcc libc6-dev libssl-dev)
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
# Everything below runs in a private mount namespace: the overlays and bind mounts vanish with this process, so
# nothing leaks onto the host even when the build fails.
if [ -z "${CALLSD_IMAGE_PRIVATE_MOUNTS:-}" ]; then
    CALLSD_IMAGE_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private -- bash "$here/scripts/build-image.sh" "$@"
fi
mkdir -p "$cache/debs" "$cache/wheels" "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/callsd-image.XXXXXX")
trap 'umount -q "$work"/*.root 2>/dev/null || true; rm -rf "$work"; [ -z "${own:-}" ] || buildah rmi "$own" >/dev/null 2>&1 || true' EXIT

# Runs a command chrooted into ROOT with /dev, /proc, DNS, CAs and the wheelhouse mounted (in a child namespace).
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

# NAME LOWER[:LOWER...]: mounts $work/NAME.root, an overlay of the cached layers (read-only, top first) under a
# writable $work/NAME, so no build step unpacks or copies a root filesystem; what a step changes lands in $work/NAME.
overlay() {
    mkdir -p "$work/$1" "$work/$1.work" "$work/$1.root"
    mount -t overlay overlay -o "lowerdir=$2,upperdir=$work/$1,workdir=$work/$1.work" "$work/$1.root"
}

# A reproducible tarball of a directory: names sorted, numeric owners, mtimes clamped, no atime/ctime.
tar_dir() {
    tar --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" -cf "$2" .
}

# Drops cached layers of other keys (an older recipe or package list), so the cache does not grow without bound.
prune() {
    find "$cache" -mindepth 1 -maxdepth 1 -name "$1-*" ! -name "$2" -exec rm -rf {} +
}

# 1. the runtime base (a cached directory)
base_key=$(printf '%s\n' "$recipe" "$suite" "$mirror" "${runtime_pkgs[@]}" | sha1sum | cut -c1-12)
base=$cache/base-$suite-$base_key
if [ ! -d "$base" ]; then
    step "debootstrap $suite (minbase + ${runtime_pkgs[*]}); cached in $base"
    debootstrap --variant=minbase --include="$(IFS=,; echo "${runtime_pkgs[*]}")" --cache-dir="$cache/debs" \
        "$suite" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log"; exit 1; }
    rm -rf "$work/base/var/lib/apt/lists/"* "$work/base/var/cache/apt/"*.bin "$work/base/var/log/"* \
        "$work/base/var/cache/apt/archives/"*.deb
    prune base "$(basename "$base")"
    mv -T "$work/base" "$base" 2>/dev/null || step "(another build cached the same base first)"
else
    step "runtime base from cache: $base"
fi

# 2a. the build layer: compiler and headers over the base (a cached overlay layer)
build_key=$(printf '%s\n' "$base_key" "${build_pkgs[@]}" | sha1sum | cut -c1-12)
build_layer=$cache/build-$suite-$build_key
if [ ! -d "$build_layer" ]; then
    step "build layer: apt-get install ${build_pkgs[*]}; cached in $build_layer"
    overlay buildpkgs "$base"
    in_root "$work/buildpkgs.root" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        ${build_pkgs[*]} >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*"
    umount "$work/buildpkgs.root"
    prune build "$(basename "$build_layer")"
    mv -T "$work/buildpkgs" "$build_layer" 2>/dev/null || step "(another build cached the same layer first)"
else
    step "build layer from cache: $build_layer"
fi

# 2b. the wheel, built inside the build root, and the venv the image will carry
step "wheel and venv inside the build root (against its own python3 and libcrypto)"
mkdir -p "$work/wheel/src"
source_files | tar --null -T - -cf - | tar -xf - -C "$work/wheel/src"
: >"$work/wheel/constraints.txt"
if [ -x "$python" ]; then  # the versions the test suite ran against (the venv's own callsd is editable: excluded)
    "$python" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^callsd' >"$work/wheel/constraints.txt" || true
fi
if [ -s "$work/wheel/constraints.txt" ]; then
    step "dependencies pinned to the versions installed in $python's environment"
else
    step "no .venv to pin from: the newest dependency versions pyproject.toml allows (see /opt/callsd/requirements.lock)"
fi
overlay wheel "$build_layer:$base"
# Downloads land in a wheelhouse in the cache (pip's own HTTP cache is not used: responses through this machine's
# egress proxy come back uncacheable); installs come from it with --no-index.
in_root "$work/wheel.root" sh -euc '
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
umount "$work/wheel.root"
rm -f "$out"/callsd-*.whl
cp "$work/wheel/dist/"callsd-*.whl "$out/"

# 3. the runtime rootfs: the base + the venv + the user, trimmed (an overlay: the base is not copied)
step "runtime rootfs"
mkdir -p "$work/runtime/opt"
mv "$work/wheel/opt/callsd" "$work/runtime/opt/callsd"
overlay runtime "$base"
rootfs=$work/runtime.root
ln -sf /opt/callsd/bin/callsd "$rootfs/usr/local/bin/callsd"
echo "callsd:x:$uid:$uid:callsd:/var/lib/callsd:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
echo "callsd:x:$uid:" >>"$rootfs/etc/group"
echo "callsd:!:::::::" >>"$rootfs/etc/shadow"
install -d -o "$uid" -g "$uid" -m 0750 "$rootfs/var/lib/callsd"
install -d -m 0755 "$rootfs/etc/callsd"
(cd "$rootfs" && rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
    usr/share/lintian usr/share/bug var/cache/apt/archives/*.deb var/cache/debconf/*-old var/lib/dpkg/*-old \
    var/cache/ldconfig/aux-cache var/log/* tmp/* root/.cache etc/machine-id dev/* proc/* sys/* run/*)
: >"$rootfs/etc/machine-id"
chmod 1777 "$rootfs/tmp"
tar_dir "$rootfs" "$out/rootfs.tar"  # every mtime clamped to SOURCE_DATE_EPOCH
umount "$rootfs"

# 4. the OCI image from deploy/container/Containerfile, and an oci-archive of it for inspection and the smoke test
step "buildah build -f deploy/container/Containerfile -> $tag"
# Built and archived under a name of this build's own, then tagged: two checkouts building at once (the tag is the
# machine's, in buildah's shared storage) each archive their own image, and the last to finish holds the tag.
own="localhost/callsd-build-$$:$version"
buildah build --quiet --layers=false --timestamp "$SOURCE_DATE_EPOCH" --format oci \
    --build-arg VERSION="$version" -f deploy/container/Containerfile -t "$own" "$out" >"$work/buildah.log" 2>&1 \
    || { cat "$work/buildah.log"; exit 1; }
rm -f "$out/callsd-image.oci.tar"
buildah push --quiet "$own" "oci-archive:$out/callsd-image.oci.tar:$tag" >/dev/null
previous=$(buildah images --quiet --no-trunc "$tag" 2>/dev/null | head -1 || true)
buildah tag "$own" "$tag"
buildah rmi "$own" >/dev/null  # the build's own name only; the image stays under $tag
if [ -n "$previous" ] && [ "$previous" != "$(buildah images --quiet --no-trunc "$tag" | head -1)" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true  # the image this tag named before: do not pile them up
fi
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
