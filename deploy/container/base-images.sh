#!/usr/bin/env bash
# Stand-ins for the public base images (python:3.11-slim, postgres:15, redis:7) on a machine that
# reaches no container registry: a Debian bookworm root file system from the apt mirror this
# machine already uses, imported into podman, then small Containerfiles. Tagged with the exact
# names the Dockerfiles and docker-compose.yml use. Cached: the root file system under
# $TASKFLOW_CONTAINERS, the images in podman's storage (rebuilt when their definitions change).
# Test fixtures only; users get the official images.
#
#   source deploy/container/runtime.sh; source deploy/container/base-images.sh; base_images_build

STAND_INS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/stand-ins"

apt_mirror() {
    # The first Debian archive (not the security one) named in this machine's apt sources.
    local uri
    uri=$(grep -hoE '^(URIs:\s*|deb\s+(\[[^]]*\]\s+)?)\S+' /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list 2>/dev/null | awk '{print $NF}' | grep -v -- '-security' | head -n1)
    echo "${uri:-http://deb.debian.org/debian}"
}

base_images_build() {
    local rootfs="$TASKFLOW_CONTAINERS/bookworm-minbase.tar"
    local digest
    digest=$(cat "$STAND_INS"/* /etc/ssl/certs/ca-certificates.crt | sha256sum | cut -c1-16)
    if [[ ! -s $rootfs ]]; then
        local mirror target
        mirror=$(apt_mirror)
        target=$(mktemp -d "$TASKFLOW_CONTAINERS/rootfs.XXXXXX")
        log "debootstrap bookworm (minbase) from $mirror"
        debootstrap --variant=minbase bookworm "$target" "$mirror" >"$TASKFLOW_CONTAINERS/debootstrap.log" 2>&1 \
            || { tail -n 20 "$TASKFLOW_CONTAINERS/debootstrap.log" >&2; rm -rf "$target"; return 1; }
        rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/*
        tar -C "$target" -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
        rm -rf "$target"
    fi
    if ! podman image exists localhost/taskflow-bookworm-minbase; then
        podman import --quiet "$rootfs" localhost/taskflow-bookworm-minbase >/dev/null || return 1
    fi
    local name file
    for name in python:3.11-slim postgres:15 redis:7; do
        file="$STAND_INS/${name%%:*}.Containerfile"
        if [[ $(podman image inspect --format '{{index .Labels "taskflow.stand-in"}}' \
            "docker.io/library/$name" 2>/dev/null) == "$digest" ]]; then
            continue
        fi
        log "building stand-in $name"
        local context
        context=$(mktemp -d)
        cp "$STAND_INS"/* "$context/"
        cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
        podman build --quiet --label "taskflow.stand-in=$digest" -f "$context/$(basename "$file")" \
            -t "docker.io/library/$name" "$context" >/dev/null || { rm -rf "$context"; return 1; }
        rm -rf "$context"
    done
}
