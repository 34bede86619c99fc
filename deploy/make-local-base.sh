#!/usr/bin/env bash
# A Debian 12 (bookworm) base image made from Debian's package archive alone, for hosts that
# cannot pull images from a registry. It provides what the Dockerfile expects of its base:
# python3 with venv and pip, and the CA bundle; torch and everything else come from
# requirements.txt at build time.
#
#   sudo deploy/make-local-base.sh [TAG]          # default tag: fxcore-base:bookworm
#   docker build --build-arg BASE=fxcore-base:bookworm -t fxcore .
#
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker engine.
# DEBIAN_MIRROR overrides the archive; by default the host's own Debian archive from its apt
# sources is used, else debootstrap's default.
set -euo pipefail

TAG="${1:-fxcore-base:bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates

[ "$(id -u)" = 0 ] || { echo "make-local-base: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "make-local-base: apt-get install debootstrap" >&2; exit 1; }
DOCKER="${DOCKER:-docker}"

host_mirror() {
    # The first "debian" archive URI of the host's apt sources (deb822 or one-line format).
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f"
    done | head -n1
    [ -f /etc/apt/sources.list ] && awk '/^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) {print $i; exit}}' /etc/apt/sources.list | head -n1
    return 0
}
MIRROR="${DEBIAN_MIRROR:-}"
[ -n "$MIRROR" ] || MIRROR="$(host_mirror | head -n1)"

ROOTFS="$(mktemp -d /var/tmp/fxcore-base.XXXXXX)"
trap 'rm -rf --one-file-system "$ROOTFS"' EXIT

echo "make-local-base: debootstrap --variant=minbase $SUITE from ${MIRROR:-the default Debian archive}"
# shellcheck disable=SC2086 # MIRROR is empty or one URL
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" $MIRROR >"$ROOTFS.log" 2>&1 \
    || { tail -n 30 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"

# Package caches and lists are not needed in an image (the Dockerfile installs nothing with apt).
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/tmp/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*

OLD_ID="$("$DOCKER" image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
tar --numeric-owner -C "$ROOTFS" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "Debian $SUITE minbase + $PACKAGES (deploy/make-local-base.sh)" \
    - "$TAG" >/dev/null
# The base it replaces, unless an image still builds on it.
[ -z "$OLD_ID" ] || "$DOCKER" image rm "$OLD_ID" >/dev/null 2>&1 || true
size="$("$DOCKER" image inspect --format '{{.Size}}' "$TAG")"
echo "make-local-base: $TAG, $((size / 1000000)) MB"
