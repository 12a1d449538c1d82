#!/usr/bin/env bash
# `make test-compose`: the compose stack built and run for real with podman (see
# tests/compose/compose_stack.py for what is checked). Installs the runtime if missing, builds
# the stand-in base images (cached under $TASKFLOW_CONTAINERS), then runs the stack test.
# Bounded: the whole run is stopped after $COMPOSE_TEST_TIMEOUT seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
source deploy/container/runtime.sh
source deploy/container/base-images.sh
UV=${UV:-.tools/bin/uv}

own_service=0
cleanup() {
    ((own_service)) && runtime_stop
}
trap cleanup EXIT

runtime_install
if [[ ! -S $TASKFLOW_RUN/podman.sock ]] || ! curl -fsS --unix-socket "$TASKFLOW_RUN/podman.sock" http://d/_ping >/dev/null 2>&1; then
    own_service=1
fi
runtime_start
prepared=$SECONDS
base_images_build
echo "runtime ready in $((prepared - started)) s, base images in $((SECONDS - prepared)) s"
COMPOSE="$COMPOSE" timeout --kill-after=30 "${COMPOSE_TEST_TIMEOUT:-1500}" \
    "$UV" run --frozen python tests/compose/compose_stack.py
echo "make test-compose: $((SECONDS - started)) s in all"
