"""Races on shared data through a running gateway: many clients change the same few tasks
(or projects) at once for a while, and every answer is counted by kind and status. A 5xx is a
defect (docs/reliability.md, "Races found in session 12"); the allowed statuses per kind are
those of `tests/reliability/test_concurrency.py`.

    python bench/gateway_bench.py --hold        # prints the gateway's URL and a token
    python bench/race_hammer.py URL TOKEN [--seconds 15] [--clients 24] [--scenario tasks]

`tasks`: status changes, completions, edge additions and removals, deletions (and new tasks in
their place), conditional updates (If-Match), dependency trees and lists on 30 shared tasks.
`projects`: projects created and deleted while tasks are created in them, linked and listed.
Bounded in time; loopback only. Exits 1 if any answer was a 5xx or an exception.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

Outcome = tuple[str, int | str]
TASK_STEPS = ["status", "complete", "edge", "unedge", "delete", "tree", "list", "if_match"]


class Hammer:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.outcomes: Counter[Outcome] = Counter()
        self.samples: dict[Outcome, str] = {}
        self.tasks: list[int] = []
        self.projects: list[int] = []

    async def call(self, kind: str, method: str, path: str, **kwargs: Any) -> Any:
        """One request, counted; its JSON body when it created something."""
        try:
            async with self.session.request(method, self.base + path, **kwargs) as response:
                self.outcomes[(kind, response.status)] += 1
                if response.status >= 500:
                    self.samples.setdefault((kind, response.status), await response.text())
                return await response.json() if response.status == 201 else None
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.outcomes[(kind, type(exc).__name__)] += 1
            return None

    async def new_task(self, **fields: Any) -> int | None:
        created = await self.call("create", "POST", "/api/v1/tasks/", json={"title": "t", **fields})
        return None if created is None else int(created["id"])

    async def new_project(self) -> None:
        body = {"name": f"p{random.random():.6f}"}
        created = await self.call("new_project", "POST", "/api/v1/projects/", json=body)
        if created is not None:
            self.projects.append(int(created["id"]))

    async def tasks_step(self, rnd: random.Random) -> None:
        kind = rnd.choice(
            ["status", "complete", "edge", "unedge", "delete", "tree", "list", "if_match"]
        )
        a, b = rnd.sample(self.tasks, 2)
        path = f"/api/v1/tasks/{a}"
        if kind == "status":
            body = {"status": rnd.choice(["todo", "in_progress", "done"])}
            await self.call(kind, "PATCH", path, json=body)
        elif kind == "complete":
            await self.call(kind, "PATCH", path, json={"is_completed": rnd.random() < 0.5})
        elif kind == "edge":
            await self.call(kind, "POST", f"{path}/dependencies", json={"depends_on_id": b})
        elif kind == "unedge":
            await self.call(kind, "DELETE", f"{path}/dependencies/{b}")
        elif kind == "delete" and rnd.random() < 0.2:
            await self.call(kind, "DELETE", path)
            replacement = await self.new_task()
            if replacement is not None and a in self.tasks:
                self.tasks[self.tasks.index(a)] = replacement
        elif kind in ("tree", "delete"):
            await self.call("tree", "GET", f"{path}/dependency-tree")
        elif kind == "list":
            await self.call(kind, "GET", "/api/v1/tasks/?sort=-priority&limit=20&status=todo")
        else:
            async with self.session.get(self.base + path) as current:
                etag = current.headers.get("ETag", "*")
            await self.call(
                kind, "PATCH", path, json={"priority": "high"}, headers={"If-Match": etag}
            )

    async def projects_step(self, rnd: random.Random) -> None:
        kind = rnd.choice(["create", "create", "edge", "list", "delete_project", "new_project"])
        project = rnd.choice(self.projects)
        if kind == "new_project":
            await self.new_project()
        elif kind == "create":
            created = await self.new_task(project_id=project)
            if created is not None:
                self.tasks.append(created)
        elif kind == "edge" and len(self.tasks) > 2:
            a, b = rnd.sample(self.tasks, 2)
            body = {"depends_on_id": b}
            await self.call(kind, "POST", f"/api/v1/tasks/{a}/dependencies", json=body)
        elif kind == "delete_project" and rnd.random() < 0.3:
            await self.call(kind, "DELETE", f"/api/v1/projects/{project}")
        else:
            await self.call("list", "GET", f"/api/v1/tasks/?project_id={project}&limit=20")


async def run(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        hammer = Hammer(session, args.url.rstrip("/"))
        if args.scenario == "tasks":
            for _ in range(30):
                created = await hammer.new_task(tags=["race"])
                if created is not None:
                    hammer.tasks.append(created)
            step = hammer.tasks_step
        else:
            for _ in range(6):
                await hammer.new_project()
            step = hammer.projects_step
        deadline = time.monotonic() + args.seconds

        async def client(seed: int) -> None:
            rnd = random.Random(seed)
            while time.monotonic() < deadline:
                await step(rnd)

        started = time.monotonic()
        await asyncio.gather(*(client(seed) for seed in range(args.clients)))
        elapsed = time.monotonic() - started
    total = sum(hammer.outcomes.values())
    print(f"{args.scenario}: {total} answers in {elapsed:.1f} s from {args.clients} clients")
    for (kind, status), count in sorted(hammer.outcomes.items(), key=str):
        print(f"  {kind:<14} {status!s:<22} {count}")
    failed = {k: v for k, v in hammer.outcomes.items() if isinstance(k[1], str) or k[1] >= 500}
    for outcome, body in hammer.samples.items():
        print(f"  first {outcome}: {body[:300]}")
    print(f"5xx or errors: {sum(failed.values())}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the gateway's URL")
    parser.add_argument("token", help="an access token (gateway_bench.py --hold prints one)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--scenario", choices=["tasks", "projects"], default="tasks")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
