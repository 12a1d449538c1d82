# One image recipe for the four services, built from the repository root:
#   docker build --build-arg SERVICE=task-service --build-arg PACKAGE=task_service \
#       --build-arg PORT=8002 -t taskflow/task-service .
# (docker-compose.yml passes the three for each service.) Only the kit and this service's sources
# enter the image, so a change to another service does not rebuild it; the other workspace
# members give just their pyproject.toml, which uv needs to read the workspace lock.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<service folder>" >&2; exit 1; }
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/kit/pyproject.toml libs/kit/
COPY libs/devstack/pyproject.toml libs/devstack/
COPY user-service/pyproject.toml user-service/
COPY task-service/pyproject.toml task-service/
COPY stats-service/pyproject.toml stats-service/
COPY api-gateway/pyproject.toml api-gateway/
# Third-party packages first: this layer is reused until uv.lock changes, and the download cache
# (shared by the four builds) outlives it.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "$SERVICE" --no-install-workspace
COPY libs/kit libs/kit
COPY ${SERVICE} ${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "$SERVICE"

FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PACKAGE
ARG PORT
RUN test -n "$PACKAGE" && test -n "$PORT" \
    || { echo "build with --build-arg PACKAGE=<import name> --build-arg PORT=<port>" >&2; exit 1; }
ENV PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:$PATH" \
    TASKFLOW_APP="${PACKAGE}.main:create_app" \
    PORT="${PORT}"
RUN groupadd --system --gid 10001 taskflow \
    && useradd --system --no-log-init --no-create-home --uid 10001 --gid 10001 taskflow
WORKDIR /app/${SERVICE}
# The environment in its own layer: a source change leaves it as it is.
COPY --from=build /app/.venv /app/.venv
COPY libs/kit /app/libs/kit
COPY ${SERVICE} /app/${SERVICE}
# Numeric, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
EXPOSE ${PORT}
# uvicorn stops on SIGTERM: no new connections, in-flight requests finish (at most 20 s), then
# the lifespan closes the database pool and Redis. `exec` makes uvicorn PID 1, so it gets it.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/health\", timeout=2)"]
CMD ["sh", "-c", "exec uvicorn \"$TASKFLOW_APP\" --factory --host 0.0.0.0 --port \"$PORT\" --no-access-log --no-proxy-headers --ws-max-size 65536 --timeout-graceful-shutdown 20"]
