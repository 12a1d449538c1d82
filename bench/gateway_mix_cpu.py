"""Gateway CPU per proxied request on a frontend-like mix (rough probe, not yet `make bench`).

The gateway runs as its own uvicorn process (production defaults: rate limits in Redis, JSON
access log, 50 users' tokens) in front of a stand-in backend answering with realistic bodies
(a 20-task list page ~12 KB, single tasks, creates); a 16-way closed loop sends the mix (55%
lists, 15% filtered lists, 10% creates, 10% reads, 5% stats, 5% updates). CPU is the gateway
process's utime+stime from /proc over 3000 requests after 500 warm-up ones. Rounds alternate
between a baseline checkout (BASELINE_SRC=<worktree>/api-gateway/src, e.g. a `git worktree` of
an older commit) and this tree. PROFILE=1 runs this tree once under py-spy (/tmp/prof.txt).
Usage: BASELINE_SRC=... uv run python bench/gateway_mix_cpu.py
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "api-gateway" / "tests"))
from gateway_doubles import free_port  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
BODY_APP = """
import json
TASK = {"id": 1, "title": "Write the quarterly report", "description": "x" * 200, "status": "todo",
        "priority": "high", "is_completed": False, "due_date": None, "tags": ["work", "q3"],
        "owner_id": 1, "assignee_id": None, "depends_on": [], "blocked": False,
        "created_at": "2026-12-01T09:00:00+00:00", "updated_at": "2026-12-01T09:00:00+00:00",
        "completed_at": None, "version": 1}
LIST = json.dumps({"tasks": [TASK] * 20, "total": 57, "skip": 0, "limit": 20}).encode()
ONE = json.dumps(TASK).encode()
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup": await send({"type": "lifespan.startup.complete"})
            else: await send({"type": "lifespan.shutdown.complete"}); return
    while True:
        m = await receive()
        if not m.get("more_body"): break
    body = LIST if scope["path"].rstrip("/").endswith("tasks") and scope["method"] == "GET" else ONE
    status = 201 if scope["method"] == "POST" else 200
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


def cpu(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


async def main(src, n=3000):
    Path("/tmp/backend_app.py").write_text(BODY_APP)
    bport, gport = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{src}:/tmp",
        "JWT_SECRET": "gateway-test-secret-0123456789abcdef-xyz",
        "REDIS_PREFIX": "tf_cpu_probe:",
        "LOG_LEVEL": "INFO",
        "GATEWAY_TASK_SERVICE_URLS": f"http://127.0.0.1:{bport}",
        "GATEWAY_USER_SERVICE_URLS": f"http://127.0.0.1:{bport}",
        "GATEWAY_STATS_SERVICE_URLS": f"http://127.0.0.1:{bport}",
    }
    be = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend_app:app",
            "--port",
            str(bport),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    gw = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api_gateway.main:create_app",
            "--factory",
            "--port",
            str(gport),
            "--no-access-log",
            "--no-proxy-headers",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    from conftest import access_token

    tokens = [access_token(i) for i in range(1, 51)]
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gport}",
            timeout=10,
            limits=httpx.Limits(max_connections=16),
        ) as c:
            for _ in range(600):
                try:
                    if (await c.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

            async def one(i):
                h = {
                    "Authorization": f"Bearer {tokens[i % 50]}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                }
                k = i % 20
                if k < 11:
                    r = await c.get("/api/v1/tasks/?limit=20", headers=h)
                elif k < 14:
                    r = await c.get("/api/v1/tasks/?status=todo&sort_by=due_date", headers=h)
                elif k < 16:
                    r = await c.post(
                        "/api/v1/tasks/",
                        headers=h,
                        content=b'{"title": "a new task", "priority": "high"}',
                    )
                elif k < 18:
                    r = await c.get(f"/api/v1/tasks/{i}", headers=h)
                elif k < 19:
                    r = await c.get("/api/v1/stats/", headers=h)
                else:
                    r = await c.patch(
                        f"/api/v1/tasks/{i}", headers=h, content=b'{"status": "done"}'
                    )
                assert r.status_code < 300, r.status_code

            async def batch(a, b):
                sem = asyncio.Semaphore(16)

                async def w(i):
                    async with sem:
                        await one(i)

                await asyncio.gather(*(w(i) for i in range(a, b)))

            await batch(0, 500)
            spy = None
            if os.environ.get("PROFILE"):
                spy = subprocess.Popen(
                    [
                        str(ROOT / ".venv" / "bin" / "py-spy"),
                        "record",
                        "-p",
                        str(gw.pid),
                        "-o",
                        "/tmp/prof.txt",
                        "--format",
                        "raw",
                        "-r",
                        "200",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1)
            c0 = cpu(gw.pid)
            t0 = time.perf_counter()
            await batch(500, 500 + n)
            if spy:
                spy.send_signal(2)
                spy.wait()
            c1 = cpu(gw.pid)
            t1 = time.perf_counter()
            return (c1 - c0) / n * 1e6, n / (t1 - t0)
    finally:
        gw.terminate()
        be.terminate()
        gw.wait()
        be.wait()


async def run():
    out = {}
    for _rnd in range(1 if os.environ.get("PROFILE") else 2):
        for name, src in (
            (("now", str(ROOT / "api-gateway" / "src")),)
            if os.environ.get("PROFILE")
            else (
                ("before", os.environ["BASELINE_SRC"]),
                ("now", str(ROOT / "api-gateway" / "src")),
            )
        ):
            us, rps = await main(src)
            out.setdefault(name, []).append(us)
            print(name, f"{us:.0f} us/request CPU", f"{rps:.0f} req/s", flush=True)
    print(json.dumps({k: sorted(v) for k, v in out.items()}))


asyncio.run(run())
