"""Gateway benchmark (`make bench`): the api-gateway against direct access and nginx, on loopback.

One invocation starts, on free loopback ports:
  * a trivial backend (raw ASGI app on uvicorn, 1 process),
  * the gateway (1 uvicorn process, production defaults: rate limiting on in Redis, JSON access
    log) in front of it, and a second gateway with rate limiting off,
  * nginx (1 worker, upstream keepalive) in front of the same backend,
  * a real task-service (fresh database, seeded tasks) for the "in front of a real service" run,
and measures, with `wrk` (closed loop, 64 connections) and a fixed-rate open-loop generator
written here (wrk2 is not packaged):
  1. throughput: direct vs gateway vs nginx at 64 connections (ratio gateway / nginx),
  2. gateway CPU per proxied request at saturation (utime+stime from /proc over the wrk run),
  3. p50 / p99 latency added by the gateway at a fixed ~500 req/s,
  4. throughput of task-service's list endpoint (with a token) direct vs through the gateway.
Rounds are interleaved and the median is reported, because this 2-core machine is shared.

Needs `wrk` and `nginx` (Debian: `apt-get install -y wrk nginx`), PostgreSQL and Redis as in
development. Not part of `make test`. Usage: `python bench/gateway_bench.py [--quick] [--json F]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from taskflow_devstack.processes import uvicorn_command

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-secret-0123456789abcdef-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "gateway_vs_nginx": 0.50,  # >= 50% of nginx's throughput at 64 connections
    "cpu_us_per_request": 350.0,  # <= 350 us of gateway CPU per proxied request
    "added_p50_ms": 1.0,  # <= 1 ms added at ~500 req/s
    "added_p99_ms": 5.0,  # <= 5 ms added at ~500 req/s
    "task_service_ratio": 0.90,  # >= 90% of direct throughput in front of task-service
}

BACKEND_APP = """
BODY = b'{"id":1,"title":"benchmark","status":"todo"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while True:  # drain the request body
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""

# The same answer from FastAPI, the framework our services use: a backend that costs what a
# real endpoint's framework costs (the raw ASGI app above is the gateway's worst case).
FASTAPI_BACKEND_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/{path:path}")
async def item(path: str) -> dict[str, object]:
    return {"id": 1, "title": "benchmark", "status": "todo"}
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 128;
    }}
    upstream fastapi_backend {{
        server 127.0.0.1:{fastapi_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
    server {{
        listen 127.0.0.1:{fastapi_nginx_port};
        location / {{
            proxy_pass http://fastapi_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children still running (nginx's worker)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(FileNotFoundError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    for one in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Bench:
    tmp: Path
    quick: bool
    processes: list[Process] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], *, port: int, env: dict[str, str], ready: str
    ) -> Process:
        log = self.tmp / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=self.tmp,
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, f"http://127.0.0.1:{port}", log)
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while True:
            if popen.poll() is not None:
                raise SystemExit(f"{name} exited early; log:\n{log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(f"GET {ready} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return process
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not become ready; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def uvicorn_argv(app: str, port: int, *, factory: bool = False) -> list[str]:
    return uvicorn_command(app, port=port, factory=factory, access_log=False, log_level="warning")


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float | None = None


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        return float("nan")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(
    url: str,
    *,
    seconds: int,
    connections: int = 64,
    headers: dict[str, str] | None = None,
    cpu_pid: int | None = None,
) -> WrkResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if "requests in" not in out or "Requests/sec" not in out:
        raise SystemExit(f"wrk gave no result for {url}:\n{out}")
    cpu_after = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "+/- Stdev" columns also end in "%" (e.g. "72.50%").
    p50_match = re.search(r"^\s+50%\s+(\S+)$", out, re.MULTILINE)
    p99_match = re.search(r"^\s+99%\s+(\S+)$", out, re.MULTILINE)
    p50 = _ms(p50_match.group(1)) if p50_match else float("nan")
    p99 = _ms(p99_match.group(1)) if p99_match else float("nan")
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(n) for n in match.groups())
    cpu = (cpu_after - cpu_before) / requests * 1e6 if cpu_pid and requests else None
    return WrkResult(rps, requests, p50, p99, errors, cpu)


async def fixed_rate(url: str, *, rate: float, seconds: float) -> list[float]:
    """Open-loop load at `rate` req/s; latency (ms) from each request's start to its last byte.

    Requests are started on a fixed schedule whatever the previous ones do (no coordinated
    omission at this rate), over pooled keep-alive connections. The client is the gateway's
    own upstream client: the lightest one at hand, so it adds little noise of its own."""
    from api_gateway.client import UpstreamClient

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = [("host", f"{host}:{port}")]
    client = UpstreamClient(connect_timeout=2, read_timeout=10, max_connections_per_replica=64)
    latencies: list[float] = []

    async def get() -> None:
        response = await client.send(host, port, "GET", target, headers)
        try:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}")
        finally:
            client.finish(response)

    for _ in range(50):  # warm the pool
        await get()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    count = int(rate * seconds)

    async def one(index: int) -> None:
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        began = time.perf_counter()
        await get()
        latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(one(i) for i in range(count)))
    await client.aclose()
    return latencies


def run_async(coroutine: Any) -> Any:
    """Run on uvloop when it is installed (as uvicorn does): less client-side noise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def require_tools() -> None:
    missing = [
        tool
        for tool in ("wrk", "nginx")
        if shutil.which(tool) is None and not (tool == "nginx" and Path("/usr/sbin/nginx").exists())
    ]
    if missing:
        raise SystemExit(
            f"missing: {', '.join(missing)}. The benchmark compares the gateway with nginx under "
            "wrk; install both (Debian/Ubuntu: `apt-get update && apt-get install -y wrk nginx`)"
            " and run `make bench` again."
        )


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def access_token() -> str:
    from taskflow_kit.tokens import TokenConfig, issue_token

    config = TokenConfig(secret=JWT_SECRET, issuer="taskflow", audience="taskflow")
    return issue_token(
        config,
        subject="4242",
        token_type="access",
        ttl=timedelta(hours=2),
        claims={"username": "bench", "is_superuser": False},
    )


def seed_tasks(url: str, token: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for index in range(count):
            body = {
                "title": f"benchmark task {index}",
                "priority": "medium",
                "description": "seeded by bench/gateway_bench.py",
                "tags": ["bench"],
            }
            response = client.post("/api/v1/tasks/", json=body)
            if response.status_code != 201:
                raise SystemExit(f"seeding failed: {response.status_code} {response.text}")


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    from sqlalchemy.engine import make_url
    from taskflow_kit.migrations import drop_database
    from taskflow_kit.testing import test_database_server_url

    url = make_url(test_database_server_url()).set(database=f"tf_bench_{uuid.uuid4().hex[:10]}")
    rendered = url.render_as_string(hide_password=False)
    try:
        yield rendered
    finally:
        asyncio.run(drop_database(rendered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--skip-task-service", action="store_true")
    args = parser.parse_args()
    require_tools()
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3 if args.quick else 8)
    latency_seconds = 4 if args.quick else 10

    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    (tmp / "bench_backend.py").write_text(BACKEND_APP)
    (tmp / "bench_fastapi_backend.py").write_text(FASTAPI_BACKEND_APP)
    bench = Bench(tmp, args.quick)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
        "rounds": rounds,
        "seconds_per_run": seconds,
    }
    shared_env = {
        "JWT_SECRET": JWT_SECRET,
        "ENVIRONMENT": "development",
        "REDIS_PREFIX": redis_prefix,
        "LOG_JSON": "true",
        "LOG_LEVEL": "INFO",
    }
    database: contextlib.ExitStack = contextlib.ExitStack()
    try:
        backend_port = free_port()
        backend = bench.start(
            "backend",
            uvicorn_argv("bench_backend:app", backend_port),
            port=backend_port,
            env={},
            ready="/",
        )
        fastapi_port = free_port()
        fastapi_backend = bench.start(
            "fastapi-backend",
            uvicorn_argv("bench_fastapi_backend:app", fastapi_port),
            port=fastapi_port,
            env={},
            ready="/x",
        )
        task_url = None
        if not args.skip_task_service:
            database_url = database.enter_context(temporary_database())
            task_port = free_port()
            task = bench.start(
                "task-service",
                uvicorn_argv("task_service.main:create_app", task_port, factory=True),
                port=task_port,
                env={
                    **shared_env,
                    "TASK_SERVICE_DATABASE_URL": database_url,
                    "MIGRATE_ON_START": "true",
                    "LOG_LEVEL": "WARNING",
                    "USER_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
                },
                ready="/health",
            )
            task_url = task.url
        gateways = {}
        for name, limits_on in (("gateway", True), ("gateway-no-rl", False)):
            port = free_port()
            gateways[name] = bench.start(
                name,
                uvicorn_argv("api_gateway.main:create_app", port, factory=True),
                port=port,
                env={
                    **shared_env,
                    "GATEWAY_USER_SERVICE_URLS": backend.url,
                    "GATEWAY_STATS_SERVICE_URLS": fastapi_backend.url,
                    "GATEWAY_TASK_SERVICE_URLS": task_url or backend.url,
                    "GATEWAY_RATE_LIMIT_ENABLED": str(limits_on).lower(),
                    # Counted in Redis on every request, but high enough never to refuse one.
                    "GATEWAY_RATE_LIMIT_PER_IP": "1000000000",
                    "GATEWAY_RATE_LIMIT_PER_USER": "1000000000",
                },
                ready="/health",
            )
        nginx_port, fastapi_nginx_port = free_port(), free_port()
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(
                tmp=tmp,
                backend_port=backend_port,
                port=nginx_port,
                fastapi_port=fastapi_port,
                fastapi_nginx_port=fastapi_nginx_port,
            )
        )
        nginx = bench.start(
            "nginx",
            [nginx_binary(), "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
            port=nginx_port,
            env={},
            ready="/api/v1/users/bench",
        )
        gateway = gateways["gateway"]
        path = "/api/v1/users/bench"
        targets = {
            "direct": (backend.url + path, backend.pid),
            "gateway": (gateway.url + path, gateway.pid),
            "gateway, rate limit off": (
                gateways["gateway-no-rl"].url + path,
                gateways["gateway-no-rl"].pid,
            ),
            "nginx": (nginx.url + path, nginx.pid),
        }
        fastapi_path = "/api/v1/stats/bench"
        fastapi_targets = {
            "direct": (fastapi_backend.url + fastapi_path, fastapi_backend.pid),
            "gateway": (gateway.url + fastapi_path, gateway.pid),
            "nginx": (f"http://127.0.0.1:{fastapi_nginx_port}{fastapi_path}", nginx.pid),
        }
        for url, _ in [*targets.values(), *fastapi_targets.values()]:  # warm up
            run_wrk(url, seconds=1)
        for key, title, table in (
            ("throughput", "raw ASGI backend", targets),
            ("throughput_fastapi_backend", "FastAPI backend", fastapi_targets),
        ):
            print(f"{title}: throughput at 64 connections, {rounds} x {seconds} s", flush=True)
            runs: dict[str, list[WrkResult]] = {name: [] for name in table}
            for round_index in range(rounds):
                for name, (url, pid) in table.items():
                    result = run_wrk(url, seconds=seconds, cpu_pid=pid)
                    runs[name].append(result)
                    print(
                        f"  round {round_index + 1} {name:24s} {result.rps:9.0f} req/s  "
                        f"cpu {result.cpu_us_per_request or 0:6.0f} us/req  "
                        f"errors {result.errors}",
                        flush=True,
                    )
            results[key] = {
                name: {
                    "rps": median([r.rps for r in rs]),
                    "cpu_us_per_request": median([r.cpu_us_per_request or 0.0 for r in rs]),
                    "p50_ms": median([r.p50_ms for r in rs]),
                    "p99_ms": median([r.p99_ms for r in rs]),
                    "errors": sum(r.errors for r in rs),
                    "runs_rps": [round(r.rps) for r in rs],
                }
                for name, rs in runs.items()
            }

        print(f"latency at 500 req/s (open loop), {latency_seconds} s each", flush=True)
        latency: dict[str, dict[str, float]] = {}
        samples: dict[str, list[float]] = {"direct": [], "gateway": []}
        for _ in range(2):
            for name in ("direct", "gateway"):
                samples[name] += run_async(
                    fixed_rate(targets[name][0], rate=500, seconds=latency_seconds / 2)
                )
        for name, values in samples.items():
            latency[name] = {
                "p50_ms": percentile(values, 50),
                "p99_ms": percentile(values, 99),
                "requests": len(values),
            }
        latency["added"] = {
            "p50_ms": latency["gateway"]["p50_ms"] - latency["direct"]["p50_ms"],
            "p99_ms": latency["gateway"]["p99_ms"] - latency["direct"]["p99_ms"],
        }
        results["latency_500rps"] = latency

        if task_url:
            token = access_token()
            seed_tasks(task_url, token, 40)
            headers = {"Authorization": f"Bearer {token}"}
            list_path = "/api/v1/tasks/?limit=20"
            task_targets = {
                "direct": (task_url + list_path, task.pid),
                "gateway": (gateway.url + list_path, gateway.pid),
            }
            for url, _ in task_targets.values():
                run_wrk(url, seconds=1, connections=32, headers=headers)
            print("task-service list (20 of 40 tasks, token), 32 connections", flush=True)
            task_runs: dict[str, list[WrkResult]] = {"direct": [], "gateway": []}
            for round_index in range(rounds):
                for name, (url, pid) in task_targets.items():
                    result = run_wrk(
                        url, seconds=seconds, connections=32, headers=headers, cpu_pid=pid
                    )
                    task_runs[name].append(result)
                    print(
                        f"  round {round_index + 1} {name:8s} {result.rps:8.0f} req/s  "
                        f"errors {result.errors}",
                        flush=True,
                    )
            results["task_service"] = {
                name: {
                    "rps": median([r.rps for r in rs]),
                    "errors": sum(r.errors for r in rs),
                    "runs_rps": [round(r.rps) for r in rs],
                }
                for name, rs in task_runs.items()
            }
    finally:
        bench.stop_all()
        database.close()
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            asyncio.run(_clean_redis(redis_prefix))

    report = render(results)
    print()
    print(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


async def _clean_redis(prefix: str) -> None:
    from taskflow_kit.redis_client import create_redis
    from taskflow_kit.testing import test_redis_url

    redis = create_redis(os.environ.get("REDIS_URL", test_redis_url()))
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def throughput_table(title: str, t: dict[str, Any]) -> list[str]:
    lines = [
        f"| {title}, 64 connections | req/s | vs direct | vs nginx | p50 ms | p99 ms "
        "| process CPU us/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in t.items():
        lines.append(
            f"| {name} | {row['rps']:.0f} | {row['rps'] / t['direct']['rps']:.0%} "
            f"| {row['rps'] / t['nginx']['rps']:.0%} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['cpu_us_per_request']:.0f} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    t = results["throughput"]
    f = results["throughput_fastapi_backend"]
    nginx_rps = t["nginx"]["rps"]
    lines = [
        f"Gateway benchmark, {results['date']} ({results['machine']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in results['load_average_at_start'])}); medians of "
        f"{results['rounds']} round(s) x {results['seconds_per_run']} s. Process CPU is the "
        "measured process alone (backend for direct, gateway, nginx master+worker).",
        "",
        *throughput_table("raw ASGI backend (uvicorn)", t),
        "",
        *throughput_table("FastAPI backend (uvicorn)", f),
    ]
    lat = results["latency_500rps"]
    lines += [
        "",
        "| 500 req/s, open loop | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| direct | {lat['direct']['p50_ms']:.2f} | {lat['direct']['p99_ms']:.2f} |",
        f"| gateway | {lat['gateway']['p50_ms']:.2f} | {lat['gateway']['p99_ms']:.2f} |",
        f"| added by the gateway | {lat['added']['p50_ms']:.2f} | {lat['added']['p99_ms']:.2f} |",
    ]
    ratio_nginx = t["gateway"]["rps"] / nginx_rps
    ratio_fastapi = f["gateway"]["rps"] / f["nginx"]["rps"]
    checks = [
        (
            "gateway >= 50% of nginx at 64 connections (raw ASGI backend)",
            f"{ratio_nginx:.0%}",
            ratio_nginx >= TARGETS["gateway_vs_nginx"],
        ),
        (
            "gateway >= 50% of nginx at 64 connections (FastAPI backend)",
            f"{ratio_fastapi:.0%}",
            ratio_fastapi >= TARGETS["gateway_vs_nginx"],
        ),
        (
            "gateway CPU <= 350 us per proxied request",
            f"{t['gateway']['cpu_us_per_request']:.0f} us",
            t["gateway"]["cpu_us_per_request"] <= TARGETS["cpu_us_per_request"],
        ),
        (
            "added p50 <= 1 ms at 500 req/s",
            f"{lat['added']['p50_ms']:.2f} ms",
            lat["added"]["p50_ms"] <= TARGETS["added_p50_ms"],
        ),
        (
            "added p99 <= 5 ms at 500 req/s",
            f"{lat['added']['p99_ms']:.2f} ms",
            lat["added"]["p99_ms"] <= TARGETS["added_p99_ms"],
        ),
    ]
    if "task_service" in results:
        ts = results["task_service"]
        ratio = ts["gateway"]["rps"] / ts["direct"]["rps"]
        lines += [
            "",
            "| task-service list with token, 32 connections | req/s | vs direct |",
            "|---|---:|---:|",
            f"| direct | {ts['direct']['rps']:.0f} | 100% |",
            f"| gateway | {ts['gateway']['rps']:.0f} | {ratio:.0%} |",
        ]
        checks.append(
            (
                "gateway >= 90% of direct in front of task-service",
                f"{ratio:.0%}",
                ratio >= TARGETS["task_service_ratio"],
            )
        )
    lines += ["", "| target | measured | |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in checks]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
