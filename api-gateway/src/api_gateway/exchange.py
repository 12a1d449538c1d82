"""The upstream exchange: one request to one upstream, through its breaker, to a replica, with
retries elsewhere when the rules allow, within the deadline.

Retry rule: a request that may have reached the upstream is repeated only when repeating cannot
change the outcome (`replayable`); a request known not to have been sent
(`FailureKind.unsent`) may always be repeated. Nothing is repeated after a timeout (the request
may be running) or once a streamed body began to go out (it cannot be sent again).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass

import structlog
from taskflow_kit.errors import GatewayTimeout, ProblemError
from taskflow_kit.resilience import BreakerState, UpstreamUnavailable

from api_gateway.client import FailureKind, UpstreamClient, UpstreamError, UpstreamResponse
from api_gateway.errors import BadGateway
from api_gateway.replicas import Replica
from api_gateway.upstreams import Upstream

logger = structlog.get_logger("api_gateway.exchange")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    deadline: float  # all attempts and backoff, until the answer's head
    retries: int  # extra attempts
    backoff: float  # first backoff; doubles, ±50% jitter
    eject_after_5xx: int


# Replayed after a lost connection (the first attempt may have been processed) only where a
# replay cannot change the outcome: safe methods, and the one route that honours
# Idempotency-Key (task-service answers a repeated key + body with the first answer). Not PUT,
# PATCH or DELETE, although RFC 9110 calls PUT and DELETE idempotent: a replayed DELETE answers
# 404, a replayed conditional update 412 (its If-Match is stale after the first), and every
# update bumps the task's version.
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_KEY_ROUTES = frozenset({("POST", "/api/v1/tasks/"), ("POST", "/api/v1/tasks")})


def replayable(method: str, path: str, *, idempotency_key: bool) -> bool:
    """Whether repeating this request, if the first attempt was processed, changes nothing."""
    return method in REPLAYABLE_METHODS or (
        idempotency_key and (method, path) in IDEMPOTENCY_KEY_ROUTES
    )


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    path: str  # the raw path, checked (api_gateway.paths)
    target: str  # raw path and query, sent as is
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterable[bytes] | None
    idempotency_key: bool = False  # the client sent an Idempotency-Key
    body_started: Callable[[], bool] = lambda: False  # a streamed body began to go out


class _Failed(Exception):
    """Every allowed attempt failed: `error` is what the client gets."""

    def __init__(self, error: ProblemError) -> None:
        self.error = error


@dataclass(slots=True)
class Answer:
    """The answer's head from one replica. The exchange holds that replica's in-flight count and
    its connection until `finish()` (after the body was relayed, or on any failure)."""

    response: UpstreamResponse
    replica: Replica
    client: UpstreamClient

    def finish(self) -> None:
        self.replica.in_flight -= 1
        self.client.finish(self.response)


async def exchange(upstream: Upstream, request: UpstreamRequest, policy: RetryPolicy) -> Answer:
    """Send the request through the upstream's breaker to a replica, retrying elsewhere when the
    rules allow, and return the answer's head. Raises the ProblemError the client gets when
    every allowed attempt failed (503, 502 or 504)."""
    breaker = upstream.breaker
    if not breaker.allow():
        raise UpstreamUnavailable(
            f"{upstream.name} is unavailable (circuit open)", retry_after=breaker.retry_after()
        )
    probe = breaker.state is BreakerState.HALF_OPEN
    try:
        response, replica = await _attempts(upstream, request, policy)
    except _Failed as failed:
        # The breaker is about the upstream as a whole: a replica that failed is ejected, and
        # while others are routable they keep serving.
        if probe or not upstream.replicas.any_routable():
            breaker.record_failure()
        raise failed.error from failed.__cause__
    except BaseException:
        breaker.release()  # cancelled, or failed on the client's side: no verdict
        raise
    breaker.record_success()
    return Answer(response, replica, upstream.client)


async def _attempts(
    upstream: Upstream, request: UpstreamRequest, policy: RetryPolicy
) -> tuple[UpstreamResponse, Replica]:
    tried: list[Replica] = []
    # The deadline caps each attempt's waits (no timer of its own on the hot path).
    deadline_at = time.monotonic() + policy.deadline
    while True:
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise _Failed(
                GatewayTimeout(f"{upstream.name} did not answer within {policy.deadline:g} s")
            )
        replica = upstream.replicas.pick(tried)
        if replica is None:
            raise _Failed(UpstreamUnavailable(f"{upstream.name} has no replicas"))
        tried.append(replica)
        replica.in_flight += 1
        try:
            response = await upstream.client.send(
                replica.host,
                replica.port,
                request.method,
                request.target,
                request.headers,
                request.body,
                within=remaining,
                body_started=request.body_started,
            )
        except UpstreamError as error:
            replica.in_flight -= 1
            retry = len(tried) <= policy.retries and _may_repeat(request, error.kind)
            _note_failure(upstream, replica, error, retry=retry)
            if not retry:
                raise _Failed(_client_error(upstream, error.kind)) from error
        except BaseException:
            replica.in_flight -= 1
            raise
        else:
            replica.record_status(response.status, eject_after_5xx=policy.eject_after_5xx)
            return response, replica
        delay = policy.backoff * (2 ** (len(tried) - 1)) * random.uniform(0.5, 1.5)
        await asyncio.sleep(min(delay, max(0.0, deadline_at - time.monotonic())))


def _may_repeat(request: UpstreamRequest, kind: FailureKind) -> bool:
    """The retry rule: never once a streamed body began to go out; always when nothing was sent;
    after a lost connection only when a replay cannot change the outcome; never after a
    timeout (the request may be running)."""
    if request.body_started():
        return False
    if kind.unsent:
        return True
    return kind is FailureKind.DISCONNECT and replayable(
        request.method, request.path, idempotency_key=request.idempotency_key
    )


def _note_failure(
    upstream: Upstream, replica: Replica, error: UpstreamError, *, retry: bool
) -> None:
    kind = error.kind
    if error.replica_at_fault and kind in (FailureKind.CONNECT, FailureKind.TIMEOUT):
        replica.eject(f"{kind.value}: {error}")
    logger.warning(
        "upstream_attempt_failed",
        upstream=upstream.name,
        replica=replica.base_url,
        failure=kind.value,
        error=str(error),
        retry=retry,
    )


def _client_error(upstream: Upstream, kind: FailureKind) -> ProblemError:
    if kind.unsent:
        return UpstreamUnavailable(f"{upstream.name} is unreachable", retry_after=1)
    if kind is FailureKind.TIMEOUT:
        return GatewayTimeout(f"{upstream.name} did not answer in time")
    return BadGateway(f"{upstream.name} closed the connection or answered invalid HTTP")
