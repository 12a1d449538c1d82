"""task-service CPU per request at two commits, side by side (issue 10: one query, not two).

Starts the suite (the launcher of `make run`) from a git worktree of each revision, seeds both
like `suite_bench.py` (quick profile), then drives routes straight to task-service (closed loop,
32 connections), alternating the stacks round by round, and prints CPU µs per request of
task-service and of PostgreSQL (utime+stime from /proc over the window ÷ requests) with the
ratio new/old. Usage: `python bench/one_query_probe.py OLD NEW [--rounds N] [--seconds S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics

from loadgen.core import Client, Recorder, closed_loop
from loadgen.frontend import users_of
from suite_bench import (
    QUICK,
    Outcome,
    Stack,
    direct_targets,
    measured,
    reset_tasks,
    seed,
    worktree,
)

ROUTES = ("read", "list", "filtered", "create")


async def probe(stacks: list[Stack], rounds: int, seconds: float) -> list[Outcome]:
    for stack in stacks:
        await seed(stack, QUICK)
    outcomes: list[Outcome] = []
    for round_number in range(1, rounds + 1):
        for index, name in enumerate(ROUTES):
            order = stacks if (round_number + index) % 2 else stacks[::-1]
            for stack in order:
                rng = random.Random(round_number * 1000 + stack.offset)

                async def load(
                    recorder: Recorder,
                    stack: Stack = stack,
                    name: str = name,
                    rng: random.Random = rng,
                ) -> None:
                    client = Client(recorder, connections=QUICK.concurrency)
                    try:
                        users = users_of(
                            client,
                            direct_targets(stack),
                            stack.accounts,
                            QUICK.concurrency,
                            rng,
                            lambda user: user.action(name),
                        )
                        await closed_loop(users, QUICK.warmup + seconds)
                    finally:
                        await client.close()

                outcome = await measured(
                    stack, name, round_number, stack.watched, QUICK.warmup, load
                )
                print(  # every step as it comes, so a stopped run still leaves its figures
                    f"  {stack.label} r{round_number} {name}: task "
                    f"{outcome.cpu_us.get('task', 0.0):.0f} us/req, postgres "
                    f"{outcome.cpu_us.get('postgres', 0.0):.0f} us/req",
                    flush=True,
                )
                outcomes.append(outcome)
                await reset_tasks(stack)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    stacks = []
    for label, revision, offset in (("probe-old", args.old, 13000), ("probe-new", args.new, 14000)):
        path, python, sha = worktree(revision)
        stacks.append(Stack(label, path, python, offset, sha))
    try:
        for stack in stacks:
            stack.start()
        outcomes = asyncio.run(probe(stacks, args.rounds, args.seconds))
    finally:
        for stack in stacks:
            with contextlib.suppress(Exception):
                stack.stop()
    print(f"\nmedian of {args.rounds} rounds, straight to task-service, CPU µs per request")
    print(f"{'route':<10}{'stack':<11}{'rev':<9}{'req/s':>8}{'fail':>6}{'task':>8}{'postgres':>10}")
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for name in ROUTES:
        for stack in stacks:
            mine = [o for o in outcomes if o.scenario == name and o.stack == stack.label]
            task = statistics.median(o.cpu_us.get("task", 0.0) for o in mine)
            postgres = statistics.median(o.cpu_us.get("postgres", 0.0) for o in mine)
            rps = statistics.median(o.rps for o in mine)
            medians[name, stack.label] = (task, postgres)
            print(
                f"{name:<10}{stack.label:<11}{stack.revision:<9}{rps:8.1f}"
                f"{sum(o.failures for o in mine):6d}{task:8.0f}{postgres:10.0f}"
            )
        (old_task, old_pg), (new_task, new_pg) = (medians[name, s.label] for s in stacks)
        print(f"{name:<10}{'new/old':<20}{'':>14}{new_task / old_task:8.2f}{new_pg / old_pg:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
