#!/usr/bin/env bash
# Build a minimal Debian root file system with the host's own apt sources and import it into
# Docker as an image: for machines whose Docker engine cannot pull anything.
#
#   docker/build-offline-base.sh [--print-sources] [TAG]     (TAG default paxos-base:<codename>)
#
# The sources are the host's enabled ones, read with `apt-get indextargets` (never a mirror of
# our own), limited to the host's release (codename, codename-updates, codename-security, ...)
# so third-party repositories of the host do not leak in. Needs root (or mmdebstrap's unshare
# mode), mmdebstrap and the docker CLI.
set -euo pipefail

# etcd-server is the second system the harness tests (--system etcd). EXTRA_PACKAGES (comma
# list) adds to these, for images built on this base (the SSH test
# image needs openssh-server and sudo; the essential variant has no apt to add them later).
PACKAGES="python3,iproute2,iptables,procps,etcd-server${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}"
print_only=0
if [ "${1:-}" = "--print-sources" ]; then print_only=1; shift; fi

codename="${SUITE:-}"
if [ -z "$codename" ] && [ -r /etc/os-release ]; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
fi
if [ -z "$codename" ]; then
    echo "build-offline-base: cannot tell the host's release (no VERSION_CODENAME in /etc/os-release); set SUITE" >&2
    exit 2
fi
tag="${1:-paxos-base:$codename}"

# One "deb URI SUITE COMPONENT..." line per (URI, suite); --no-release-info works even before
# `apt-get update` has fetched anything.
sources="$(
    apt-get indextargets --no-release-info \
        --format '$(TARGET_OF) $(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' |
    awk -v cn="$codename" '
        $1 == "deb" && ($3 == cn || index($3, cn "-") == 1 || index($3, cn "/") == 1) {
            key = $2 " " $3
            if (!(key in comps)) { order[++n] = key; comps[key] = "" }
            if (index(" " comps[key] " ", " " $4 " ") == 0) comps[key] = comps[key] " " $4
        }
        END { for (i = 1; i <= n; i++) print "deb " order[i] comps[order[i]] }'
)"
if [ -z "$sources" ]; then
    echo "build-offline-base: the host has no enabled apt source for $codename (apt-get indextargets)" >&2
    exit 2
fi
if [ "$print_only" = 1 ]; then
    printf '%s\n' "$sources"
    exit 0
fi
command -v mmdebstrap >/dev/null || {
    echo "build-offline-base: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 2; }
command -v docker >/dev/null || { echo "build-offline-base: the docker CLI is not installed" >&2; exit 2; }

mirrors=()
while IFS= read -r line; do mirrors+=("$line"); done <<<"$sources"
echo "build-offline-base: $tag from $codename with:" >&2
printf '  %s\n' "${mirrors[@]}" >&2

# essential + our packages is the smallest tree that runs the node; documentation, manuals and
# translations are never unpacked.
# merged /usr set up the debootstrap way (usr-is-merged) rather than by the usrmerge package,
# which would pull in perl.
hooks=()
if [ -d /usr/share/mmdebstrap/hooks/maybe-merged-usr ]; then
    hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr)
fi

mmdebstrap --variant=essential --include="$PACKAGES" --format=tar "${hooks[@]}" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$codename" - "${mirrors[@]}" |
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --change "LABEL paxos-harness.image=base paxos-harness.suite=$codename" \
    - "$tag"
