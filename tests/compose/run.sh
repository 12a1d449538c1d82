#!/usr/bin/env bash
# `make test-compose`: the compose stack built and run for real with podman (see
# tests/compose/compose_stack.py for what is checked). Installs the runtime if missing, builds
# the stand-in base images (cached under $TASKFLOW_CONTAINERS), then runs the stack test.
# Bounded: every step has a limit and the whole run stops after $COMPOSE_TEST_TIMEOUT seconds
# (the stack test tears the stack down when it is stopped).
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=${COMPOSE_TEST_TIMEOUT:-600}
started=$SECONDS
source deploy/container/runtime.sh
UV=${UV:-.tools/bin/uv}

own_service=0
cleanup() {
    # Each build leaves the previous images untagged: drop those over an hour old, so the store
    # stays at a few GB while the latest layers remain as the next run's cache.
    timeout 120 podman image prune --force --filter until=1h >/dev/null 2>&1 || true
    if ((own_service)); then runtime_stop; fi
}
trap cleanup EXIT

timeout 300 bash -c 'source deploy/container/runtime.sh && runtime_install'
if ! curl -fsS --unix-socket "$TASKFLOW_RUN/podman.sock" http://d/_ping >/dev/null 2>&1; then
    own_service=1
fi
runtime_start
prepared=$SECONDS
timeout 420 bash -c 'source deploy/container/runtime.sh && source deploy/container/base-images.sh \
    && base_images_build'
echo "runtime ready in $((prepared - started)) s, base images in $((SECONDS - prepared)) s"
left=$((budget - (SECONDS - started)))
((left > 60)) || { echo "no time left for the stack test (budget $budget s)" >&2; exit 1; }
COMPOSE="$COMPOSE" timeout --kill-after=30 "$left" \
    "$UV" run --frozen python tests/compose/compose_stack.py --up-timeout 300
echo "make test-compose: $((SECONDS - started)) s in all"
