"""Gateway benchmark (`make bench-gateway`): the api-gateway's cost per request beside nginx's,
before and after a change, on loopback, in one invocation.

It starts, on free loopback ports:
  * task-service on a fresh database (seeded tasks of 16 users): the real upstream;
  * a stand-in backend (raw ASGI, one uvicorn process) answering as user-service and
    stats-service do (a user, a stats document), and the cheapest possible answer for the raw
    proxy comparison;
  * the gateway as shipped (one uvicorn process, uvloop + httptools; access log, rate limits
    counted in Redis, token check, metrics and trace context all on), twice: with the
    development default (plain text log lines) and with JSON log lines; with `--compare REV`,
    the gateway of that commit too (its `api-gateway/src` and `libs/kit/src`, taken with
    `git archive`), both ways;
  * nginx (1 worker, upstream keep-alive) routing the same prefixes to the same upstreams;
  * "the floor": the gateway's two libraries with nothing of the gateway's work, a minimal
    ASGI proxy on the same uvicorn (uvloop + httptools) with one pooled aiohttp session, routing
    the same prefixes (no checks, limits, logs, metrics, trace context, replicas or retries):
    what any gateway built on uvicorn + aiohttp costs on this machine, so the gateway's own
    share is the difference, read in the same run;
and measures, with `wrk` and a fixed-rate open-loop generator written here (wrk2 is not
packaged), rounds interleaved (medians), because this 2-core machine is shared:
  1. `GET /api/v1/tasks/{id}` with a token, 32 connections: req/s and CPU per request of each
     process (utime+stime from /proc over the wrk run), direct to task-service, through each
     gateway and through nginx;
  2. the frontend mix of `make bench` (bench/loadgen/frontend.py's weights: lists, filtered
     lists, creates, reads, stats, me, updates, completes; 16 users' tokens) through each
     gateway and nginx, 16 connections: CPU per request;
  3. the raw proxy: the stand-in's cheapest answer at 64 connections, direct / gateway / nginx;
  4. p50 / p99 latency added by the gateway at a fixed ~500 req/s (stand-in backend), direct
     and each gateway taking 1 s turns;
  5. task-service's list (20 tasks, token) direct vs through the gateway, 32 connections.

With `--instructions`, also the instructions each gateway (text log) and the floor execute per
request on the read and the mix, under `valgrind --tool=callgrind` (counted only while wrk runs
with 4 connections after a warm-up, minus the process's idle rate measured for 10 s after): a
count the machine's speed and the other processes do not change, where CPU time on this shared
machine spreads by ±30% between runs. Time-driven background work (the rate limiter's flush
every 200 ms, health probes) weighs more per request under valgrind, which serves ~60 req/s.

Needs `wrk` and `nginx` (Debian: `apt-get install -y wrk nginx`): without them it stops with an
error, it never skips. PostgreSQL and Redis as in development. Not part of `make test`.
Usage: `python bench/gateway_bench.py [--quick] [--compare REV] [--instructions] [--json F]`;
`--hold` starts everything, prints each target (URL, pid, the mix's wrk script) and waits for
Ctrl-C, to profile one process under a load of your own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
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
USERS = 16  # tokens of distinct users in the mix (per-user rate-limit keys, token cache)
LATENCY_SLICES = 10  # the fixed-rate runs, direct and through each gateway, in turns

TARGETS = {
    "cpu_us_per_request": 350.0,  # <= 350 us of gateway CPU per proxied request
    "added_p50_ms": 1.0,  # <= 1 ms added at ~500 req/s
    "added_p99_ms": 5.0,  # <= 5 ms added at ~500 req/s
    "task_service_ratio": 0.90,  # >= 90% of direct throughput in front of task-service
}

# The stand-in for user-service and stats-service: `/api/v1/auth/me`-like and stats-like
# answers, and a tiny one at `/api/v1/users/bench` (the raw proxy comparison).
BACKEND_APP = """
import json
ME = json.dumps({"id": 1, "email": "ada@example.com", "username": "ada", "full_name": "Ada",
                 "is_active": True, "is_superuser": False,
                 "created_at": "2026-12-01T09:00:00+00:00",
                 "updated_at": "2026-12-01T09:00:00+00:00"}).encode()
STATS = json.dumps({"total_tasks": 57, "completed_tasks": 12, "completed_percentage": 21.05,
                    "by_status": {"todo": 30, "in_progress": 15, "done": 12},
                    "by_priority": {"low": 10, "medium": 20, "high": 20, "urgent": 7},
                    "overdue": 3, "due_next_7_days": 9, "completed_last_7_days": 4,
                    "generated_at": "2026-12-01T09:00:00+00:00"}).encode()
TINY = b'{"id":1,"title":"benchmark","status":"todo"}'


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
    path = scope["path"]
    if path == "/openapi.json":  # as the services serve one (else the gateway keeps asking)
        body = b'{"openapi": "3.1.0", "info": {"title": "stand-in", "version": "0"}, "paths": {}}'
    else:
        body = STATS if path.startswith("/api/v1/stats") else ME if "/me" in path else TINY
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

# The floor: uvicorn + one aiohttp session, forwarding each request as it came (body read whole,
# answer relayed in one body message) and doing nothing else.
FLOOR_APP = """
import os
import aiohttp
from yarl import URL

TASKS = os.environ["FLOOR_TASK_SERVICE_URL"]
OTHERS = os.environ["FLOOR_OTHER_URL"]
DROPPED = {b"date", b"server", b"connection", b"transfer-encoding", b"keep-alive"}
session = None


async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    base = TASKS if path.startswith(("/api/v1/tasks", "/api/v1/projects")) else OTHERS
    target = scope["raw_path"].decode()
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode()
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"]
    async with session.request(
        scope["method"], URL(base + target, encoded=True), headers=headers,
        data=body or None, allow_redirects=False,
    ) as response:
        answer = await response.read()
        out = [(k, v) for k, v in response.raw_headers if k.lower() not in DROPPED]
    await send({"type": "http.response.start", "status": response.status, "headers": out})
    await send({"type": "http.response.body", "body": answer})
"""
FLOOR = "floor: uvicorn + aiohttp, no work"

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
    upstream task_service {{
        server 127.0.0.1:{task_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        location /api/v1/tasks {{
            proxy_pass http://task_service;
        }}
        location / {{
            proxy_pass http://backend;
        }}
    }}
}}
"""

# The frontend mix of `make bench` (bench/loadgen/frontend.py MIX_WEIGHTS), as whole requests
# per 100: deletes (0.5) are left out (they would empty the seeded set), updates rounded up.
MIX = {
    "list": 53,
    "filtered": 13,
    "create": 12,
    "read": 9,
    "stats": 6,
    "me": 4,
    "update": 2,
    "complete": 1,
}
FILTERS = [
    "status=todo&limit=20",
    "priority=high&priority=urgent&limit=20",
    "tags=bench&limit=20",
    "search=task&limit=20",
    "sort_by=priority&sort_order=desc&limit=20",
]


def mix_requests(
    tokens: dict[int, str], ids: dict[int, list[int]]
) -> list[tuple[str, str, str, str | None]]:
    """One shuffled round of the mix, 100 requests: (method, path, token, JSON body)."""
    rng = random.Random(7)
    users = list(tokens)
    requests: list[tuple[str, str, str, str | None]] = []
    for index, kind in enumerate(k for k, n in MIX.items() for _ in range(n)):
        user = users[index % len(users)]
        token, task = tokens[user], rng.choice(ids[user])
        if kind == "list":
            requests.append(("GET", "/api/v1/tasks/?limit=20", token, None))
        elif kind == "filtered":
            requests.append(("GET", f"/api/v1/tasks/?{rng.choice(FILTERS)}", token, None))
        elif kind == "create":
            body = {"title": f"mix task {index}", "priority": "high", "tags": ["bench"]}
            requests.append(("POST", "/api/v1/tasks/", token, json.dumps(body)))
        elif kind == "read":
            requests.append(("GET", f"/api/v1/tasks/{task}", token, None))
        elif kind == "stats":
            requests.append(("GET", "/api/v1/stats/", token, None))
        elif kind == "me":
            requests.append(("GET", "/api/v1/auth/me", token, None))
        elif kind == "update":
            requests.append(("PATCH", f"/api/v1/tasks/{task}", token, '{"title": "edited"}'))
        else:
            requests.append(("PATCH", f"/api/v1/tasks/{task}/complete", token, None))
    rng.shuffle(requests)
    return requests


def wrk_script(requests: list[tuple[str, str, str, str | None]]) -> str:
    """A wrk Lua script sending `requests` in a cycle (each built once, in `init`)."""

    def lua(value: str | None) -> str:
        return "nil" if value is None else json.dumps(value)  # a JSON string is a Lua string

    rows = ",\n".join(f"  {{{lua(m)}, {lua(p)}, {lua(t)}, {lua(b)}}}" for m, p, t, b in requests)
    return f"""local specs = {{
{rows}
}}
local built = {{}}
local index = 0
init = function(args)
  for i, spec in ipairs(specs) do
    local headers = {{["Authorization"] = "Bearer " .. spec[3]}}
    if spec[4] ~= nil then headers["Content-Type"] = "application/json" end
    built[i] = wrk.format(spec[1], spec[2], headers, spec[4])
  end
end
request = function()
  index = index % #built + 1
  return built[index]
end
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
    script: Path | None = None,
) -> WrkResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
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


def require_tools(*, valgrind: bool = False) -> None:
    tools = ("wrk", "nginx", "valgrind", "callgrind_control") if valgrind else ("wrk", "nginx")
    missing = [
        tool
        for tool in tools
        if shutil.which(tool) is None and not (tool == "nginx" and Path("/usr/sbin/nginx").exists())
    ]
    if missing:
        raise SystemExit(
            f"missing: {', '.join(missing)}. The benchmark compares the gateway with nginx under "
            "wrk (and counts instructions with valgrind); install them (Debian/Ubuntu: "
            "`apt-get update && apt-get install -y wrk nginx valgrind`) and run it again."
        )


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def access_token(user_id: int = 4242) -> str:
    from taskflow_kit.tokens import TokenConfig, issue_token

    config = TokenConfig(secret=JWT_SECRET, issuer="taskflow", audience="taskflow")
    return issue_token(
        config,
        subject=str(user_id),
        token_type="access",
        ttl=timedelta(hours=2),
        claims={"username": "bench", "is_superuser": False},
    )


def seed_tasks(url: str, token: str, count: int) -> list[int]:
    """`count` tasks owned by the token's user, created on task-service; their ids."""
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[int] = []
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
            ids.append(response.json()["id"])
    return ids


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


@dataclass
class Gateway:
    name: str
    process: Process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--compare", metavar="REV", help="also run the gateway of this commit")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per request under callgrind (needs valgrind; +1 min each)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="start everything, print the targets (URLs, pids, the mix's wrk script) and wait "
        "for Ctrl-C: for profiling one process under a load of your own",
    )
    args = parser.parse_args()
    require_tools(valgrind=args.instructions)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3 if args.quick else 8)
    latency_seconds = 4 if args.quick else 10

    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    (tmp / "bench_backend.py").write_text(BACKEND_APP)
    (tmp / "bench_floor.py").write_text(FLOOR_APP)
    sources = {"now": f"{ROOT / 'api-gateway' / 'src'}:{ROOT / 'libs' / 'kit' / 'src'}"}
    if args.compare:
        revision = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.compare],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        paths = ["api-gateway/src", "libs/kit/src"]
        has_web = subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{revision}:api-gateway/web"],
            capture_output=True,
        )
        if has_web.returncode == 0:  # the web app's files, which the gateway loads at start
            paths.append("api-gateway/web")
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, *paths],
            capture_output=True,
            check=True,
        ).stdout
        (tmp / "before").mkdir()
        subprocess.run(["tar", "-x", "-C", str(tmp / "before")], input=archive, check=True)
        before = tmp / "before"
        sources[f"before ({revision})"] = (
            f"{before / 'api-gateway' / 'src'}:{before / 'libs' / 'kit' / 'src'}"
        )
    bench = Bench(tmp, args.quick)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
        "rounds": rounds,
        "seconds_per_run": seconds,
        "gateways": list(sources),
    }
    shared_env = {
        "JWT_SECRET": JWT_SECRET,
        "ENVIRONMENT": "development",
        "REDIS_PREFIX": redis_prefix,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",  # as `make run` starts them
    }
    database: contextlib.ExitStack = contextlib.ExitStack()
    try:
        asyncio.run(_mark_revocations_complete(redis_prefix))
        backend_port = free_port()
        backend = bench.start(
            "backend",
            uvicorn_argv("bench_backend:app", backend_port),
            port=backend_port,
            env={},
            ready="/",
        )
        database_url = database.enter_context(temporary_database())
        task_port = free_port()
        task = bench.start(
            "task-service",
            uvicorn_argv("task_service.main:create_app", task_port, factory=True),
            port=task_port,
            env={
                **shared_env,
                "LOG_JSON": "true",
                "TASK_SERVICE_DATABASE_URL": database_url,
                "MIGRATE_ON_START": "true",
                "LOG_LEVEL": "WARNING",
                "USER_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
            },
            ready="/health",
        )
        gateways: list[Gateway] = []

        def gateway_env(pythonpath: str, log: str) -> dict[str, str]:
            return {
                **shared_env,
                "PYTHONPATH": pythonpath,
                "LOG_JSON": str(log == "json").lower(),
                "GATEWAY_USER_SERVICE_URLS": backend.url,
                "GATEWAY_STATS_SERVICE_URLS": backend.url,
                "GATEWAY_TASK_SERVICE_URLS": task.url,
                # Counted in Redis on every request, but never refusing one.
                "GATEWAY_RATE_LIMIT_PER_IP": "1000000000",
                "GATEWAY_RATE_LIMIT_PER_USER": "1000000000",
            }

        for source_name, pythonpath in sources.items():
            for log in ("text", "json"):
                port = free_port()
                name = f"gateway {source_name}, {log} log"
                gateways.append(
                    Gateway(
                        name,
                        bench.start(
                            name.replace(" ", "_")
                            .replace(",", "")
                            .replace("(", "")
                            .replace(")", ""),
                            uvicorn_argv("api_gateway.main:create_app", port, factory=True),
                            port=port,
                            env=gateway_env(pythonpath, log),
                            ready="/health",
                        ),
                    )
                )
        floor_port = free_port()
        floor_env = {"FLOOR_TASK_SERVICE_URL": task.url, "FLOOR_OTHER_URL": backend.url}
        floor = bench.start(
            "floor",
            uvicorn_argv("bench_floor:app", floor_port),
            port=floor_port,
            env=floor_env,
            ready="/api/v1/users/bench",
        )
        nginx_port = free_port()
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(
                tmp=tmp, backend_port=backend_port, task_port=task_port, port=nginx_port
            )
        )
        nginx = bench.start(
            "nginx",
            [nginx_binary(), "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
            port=nginx_port,
            env={},
            ready="/api/v1/users/bench",
        )

        tokens = {user: access_token(user) for user in range(4242, 4242 + USERS)}
        ids = {user: seed_tasks(task.url, token, 5) for user, token in tokens.items()}
        read_token = tokens[4242]
        auth = {"Authorization": f"Bearer {read_token}"}
        (tmp / "mix.lua").write_text(wrk_script(mix_requests(tokens, ids)))

        def table(path: str, *, direct: Process | None) -> dict[str, tuple[str, int]]:
            out = {} if direct is None else {"direct": (direct.url + path, direct.pid)}
            for gateway in gateways:
                out[gateway.name] = (gateway.process.url + path, gateway.process.pid)
            out[FLOOR] = (floor.url + path, floor.pid)
            out["nginx"] = (nginx.url + path, nginx.pid)
            return out

        if args.hold:
            print(f"mix: wrk -s {tmp / 'mix.lua'} -c16 -d10s <url>")
            read = f"/api/v1/tasks/{ids[4242][0]}"
            print(f"read: curl -H 'Authorization: Bearer {read_token}' <url>{read}")
            for name, (url, pid) in table("", direct=task).items():
                print(f"  {name:38s} {url}  pid {pid}")
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # taken by sigwait, then cleaned up
            signal.sigwait(stop)
            return

        def measure(
            key: str,
            title: str,
            targets: dict[str, tuple[str, int]],
            *,
            connections: int,
            headers: dict[str, str] | None = None,
            script: Path | None = None,
        ) -> None:
            for url, _ in targets.values():  # warm up
                run_wrk(url, seconds=1, connections=connections, headers=headers, script=script)
            print(f"{title}: {connections} connections, {rounds} x {seconds} s", flush=True)
            runs: dict[str, list[WrkResult]] = {name: [] for name in targets}
            for round_index in range(rounds):
                for name, (url, pid) in targets.items():
                    result = run_wrk(
                        url,
                        seconds=seconds,
                        connections=connections,
                        headers=headers,
                        cpu_pid=pid,
                        script=script,
                    )
                    runs[name].append(result)
                    print(
                        f"  round {round_index + 1} {name:38s} {result.rps:8.0f} req/s  "
                        f"cpu {result.cpu_us_per_request or 0:6.0f} us/req  "
                        f"errors {result.errors}",
                        flush=True,
                    )
            results[key] = {
                "title": title,
                "connections": connections,
                "rows": {
                    name: {
                        "rps": median([r.rps for r in rs]),
                        "cpu_us_per_request": median([r.cpu_us_per_request or 0.0 for r in rs]),
                        "p50_ms": median([r.p50_ms for r in rs]),
                        "p99_ms": median([r.p99_ms for r in rs]),
                        "errors": sum(r.errors for r in rs),
                        "runs_cpu_us": [round(r.cpu_us_per_request or 0.0) for r in rs],
                    }
                    for name, rs in runs.items()
                },
            }

        read_path = f"/api/v1/tasks/{ids[4242][0]}"
        measure(
            "read",
            "GET /api/v1/tasks/{id} on task-service, with a token",
            table(read_path, direct=task),
            connections=32,
            headers=auth,
        )
        measure(
            "mix",
            "the frontend mix of make bench (task-service; stand-in for users and stats)",
            table("/", direct=None),
            connections=16,
            script=tmp / "mix.lua",
        )
        measure(
            "raw",
            "the raw proxy: a stand-in's 45-byte answer",
            table("/api/v1/users/bench", direct=backend),
            connections=64,
        )

        gateway = next(g for g in gateways if g.name == "gateway now, text log")
        print(f"latency at 500 req/s (open loop), {latency_seconds} s each", flush=True)
        urls = {"direct": backend.url + "/api/v1/users/bench"}
        for g in gateways:
            if g.name.endswith("text log"):
                urls[g.name] = g.process.url + "/api/v1/users/bench"
        samples: dict[str, list[float]] = {name: [] for name in urls}
        # Short slices, taken in turn: on a shared machine the load of other processes changes
        # from second to second, and a p99 measured on one side of such a change says more about
        # it than about the gateway.
        for _ in range(LATENCY_SLICES):
            for name, url in urls.items():
                samples[name] += run_async(
                    fixed_rate(url, rate=500, seconds=latency_seconds / LATENCY_SLICES)
                )
        latency: dict[str, dict[str, float]] = {
            name: {
                "p50_ms": percentile(values, 50),
                "p99_ms": percentile(values, 99),
                "requests": len(values),
            }
            for name, values in samples.items()
        }
        latency["added"] = {
            "p50_ms": latency[gateway.name]["p50_ms"] - latency["direct"]["p50_ms"],
            "p99_ms": latency[gateway.name]["p99_ms"] - latency["direct"]["p99_ms"],
        }
        results["latency_500rps"] = latency

        list_path = "/api/v1/tasks/?limit=20"
        # The floor and nginx too: on two cores any proxy takes CPU from task-service, so the
        # share of direct throughput a proxy keeps is read beside theirs.
        listed = {
            name: target
            for name, target in table(list_path, direct=task).items()
            if not name.endswith("json log")
        }
        measure(
            "list",
            "task-service list (20 tasks, token)",
            listed,
            connections=32,
            headers=auth,
        )
        if args.instructions:
            counted: dict[str, tuple[str, dict[str, str]]] = {
                f"gateway {source_name}, text log": (
                    "api_gateway.main:create_app",
                    gateway_env(pythonpath, "text"),
                )
                for source_name, pythonpath in sources.items()
            }
            counted[FLOOR] = ("bench_floor:app", floor_env)
            loads = {"read": (read_path, auth, None), "mix": ("/", None, tmp / "mix.lua")}
            print("instructions per request under callgrind, wrk 4 connections", flush=True)
            instructions: dict[str, dict[str, dict[str, float]]] = {}
            for name, (app, env) in counted.items():
                for kind, (path, headers, script) in loads.items():
                    count = count_instructions(
                        tmp,
                        app,
                        env,
                        factory=name != FLOOR,
                        path=path,
                        headers=headers,
                        script=script,
                        seconds=4 if args.quick else 15,
                    )
                    instructions.setdefault(name, {})[kind] = count
                    print(
                        f"  {name:38s} {kind:4s} {count['requests']:5.0f} requests  "
                        f"{count['net_m']:.3f} M instructions/request (net of idle)",
                        flush=True,
                    )
            results["instructions"] = instructions
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


IDLE_SECONDS = 10  # the idle window measured after the busy one, to subtract background work


def count_instructions(
    tmp: Path,
    app: str,
    env: dict[str, str],
    *,
    factory: bool,
    path: str,
    headers: dict[str, str] | None,
    script: Path | None,
    seconds: int,
) -> dict[str, float]:
    """Instructions the process executes per request: run under callgrind with instrumentation
    off, warm up with wrk, count only while wrk runs for `seconds` (4 connections), then count
    `IDLE_SECONDS` without requests; net = busy - idle rate x `seconds`, per request."""
    port = free_port()
    out = tmp / f"callgrind-{uuid.uuid4().hex[:8]}"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}.%p",
        *uvicorn_argv(app, port, factory=factory),
    ]
    log = out.with_suffix(".log")
    popen = subprocess.Popen(
        argv,
        cwd=tmp,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid = str(popen.pid)
    url = f"http://127.0.0.1:{port}{path}"

    def control(*options: str) -> None:
        subprocess.run(["callgrind_control", *options, pid], capture_output=True, check=True)

    try:
        deadline = time.monotonic() + 300  # Python starts ~50x slower under valgrind
        while True:
            if popen.poll() is not None:
                raise SystemExit(f"{app} under valgrind exited; log:\n{log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{app} under valgrind did not start") from None
                time.sleep(1)
        run_wrk(url, seconds=8, connections=4, headers=headers, script=script)  # warm-up
        control("--instr=on")
        requests = run_wrk(
            url, seconds=seconds, connections=4, headers=headers, script=script
        ).requests
        control("--instr=off")
        control("--dump=busy")
        control("--zero")
        control("--instr=on")
        time.sleep(IDLE_SECONDS)
        control("--instr=off")
        control("--dump=idle")
    finally:
        popen.terminate()
        try:
            popen.wait(60)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    totals = {}
    for dump in out.parent.glob(f"{out.name}.{pid}*"):
        text = dump.read_text(errors="replace")
        reason = re.search(r"^desc: Trigger: dump (busy|idle)$", text, re.MULTILINE)
        # "summary:" may be 0 in a dump requested from outside; "totals:" holds the count.
        counts = [int(n) for n in re.findall(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)]
        if reason and counts:
            totals[reason.group(1)] = max(counts)
    if set(totals) != {"busy", "idle"} or not requests:
        raise SystemExit(f"callgrind dumps of {app} incomplete: {sorted(totals)}")
    net = totals["busy"] - totals["idle"] * seconds / IDLE_SECONDS
    return {
        "requests": requests,
        "raw_m": totals["busy"] / requests / 1e6,
        "net_m": net / requests / 1e6,
        "idle_m_per_second": totals["idle"] / IDLE_SECONDS / 1e6,
    }


async def _mark_revocations_complete(prefix: str) -> None:
    """What user-service's relay does once its events are in Redis (no user-service runs here):
    without the epoch key task-service answers 503 until it has a complete revocation map."""
    from taskflow_kit.events import epoch_key
    from taskflow_kit.redis_client import create_redis
    from taskflow_kit.testing import test_redis_url

    redis = create_redis(os.environ.get("REDIS_URL", test_redis_url()))
    try:
        await redis.set(epoch_key(prefix, "user-service"), "bench")
    finally:
        await redis.aclose()


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


def throughput_table(section: dict[str, Any]) -> list[str]:
    rows = section["rows"]
    base = rows.get("direct")
    lines = [
        f"| {section['title']}, {section['connections']} connections | req/s | vs direct "
        "| p50 ms | p99 ms | process CPU us/req | runs |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        ratio = f"{row['rps'] / base['rps']:.0%}" if base else "-"
        errors = f" ({row['errors']} errors)" if row["errors"] else ""
        lines.append(
            f"| {name}{errors} | {row['rps']:.0f} | {ratio} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['cpu_us_per_request']:.0f} "
            f"| {', '.join(str(v) for v in row['runs_cpu_us'])} |"
        )
    return lines


def floor_table(results: dict[str, Any]) -> list[str]:
    """Each gateway's CPU per request beside the floor's (uvicorn + aiohttp doing nothing else),
    and the difference: the gateway's own work."""
    lines = [
        "| CPU us per request: the gateway's own share | the floor | gateway | above the floor |",
        "|---|---:|---:|---:|",
    ]
    for key in ("read", "mix", "raw"):
        rows = results[key]["rows"]
        floor = rows[FLOOR]["cpu_us_per_request"]
        for name, row in rows.items():
            if name.startswith("gateway"):
                cpu = row["cpu_us_per_request"]
                lines.append(
                    f"| {key}: {name} | {floor:.0f} | {cpu:.0f} | {cpu - floor:.0f} "
                    f"({cpu / floor - 1:+.0%}) |"
                )
    return lines


def instructions_table(counts: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    floor = counts[FLOOR]
    lines = [
        "| M instructions per request under callgrind (net of idle), 4 connections "
        "| read | vs the floor | mix | vs the floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, kinds in counts.items():
        read, mix = kinds["read"]["net_m"], kinds["mix"]["net_m"]
        lines.append(
            f"| {name} | {read:.3f} | {read / floor['read']['net_m']:.2f}x "
            f"| {mix:.3f} | {mix / floor['mix']['net_m']:.2f}x |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    lines = [
        f"Gateway benchmark, {results['date']} ({results['machine']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in results['load_average_at_start'])}); medians of "
        f"{results['rounds']} round(s) x {results['seconds_per_run']} s. Process CPU is the "
        "measured process alone (task-service or the stand-in for direct, a gateway, the floor, "
        "nginx master+worker).",
    ]
    for key in ("read", "mix", "raw", "list"):
        if key in results:
            lines += ["", *throughput_table(results[key])]
    lat = results["latency_500rps"]
    lines += [
        "",
        "| 500 req/s, open loop (stand-in backend) | p50 ms | p99 ms |",
        "|---|---:|---:|",
    ]
    for name, row in lat.items():
        label = "added by the gateway now" if name == "added" else name
        lines.append(f"| {label} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |")
    lines += ["", *floor_table(results)]
    if "instructions" in results:
        lines += ["", *instructions_table(results["instructions"])]
    checks: list[tuple[str, str, bool]] = []
    for key, what in (("read", "GET /api/v1/tasks/{id}"), ("mix", "the frontend mix")):
        rows = results[key]["rows"]
        for log in ("text", "json"):
            row = rows[f"gateway now, {log} log"]
            checks.append(
                (
                    f"gateway CPU <= 350 us per request, {what}, {log} log "
                    f"(nginx: {rows['nginx']['cpu_us_per_request']:.0f} us, "
                    f"the floor: {rows[FLOOR]['cpu_us_per_request']:.0f} us)",
                    f"{row['cpu_us_per_request']:.0f} us",
                    row["cpu_us_per_request"] <= TARGETS["cpu_us_per_request"],
                )
            )
    checks += [
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
    for key, what in (("read", "GET /api/v1/tasks/{id}"), ("list", "the task list")):
        rows = results[key]["rows"]
        ratio = rows["gateway now, text log"]["rps"] / rows["direct"]["rps"]
        checks.append(
            (
                f"gateway >= 90% of direct in front of task-service, {what}",
                f"{ratio:.0%}",
                ratio >= TARGETS["task_service_ratio"],
            )
        )
    lines += ["", "| target | measured | |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in checks]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
