"""The upstream exchange: one request to one upstream, through its breaker, to a replica, with
retries elsewhere when the rules allow, within the deadline.

Retry rule: a request that may have reached the upstream is repeated only when repeating cannot
change the outcome (`UpstreamRequest.replayable`); a request known not to have been sent
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

from api_gateway.client import FailureKind, UpstreamError, UpstreamResponse
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


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    target: str  # raw path and query, sent as is
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterable[bytes] | None
    replayable: bool  # repeating it, if the first attempt was processed, changes nothing
    body_started: Callable[[], bool] = lambda: False  # a streamed body began to go out


class _Failed(Exception):
    """Every allowed attempt failed: `error` is what the client gets."""

    def __init__(self, error: ProblemError) -> None:
        self.error = error


async def exchange(
    upstream: Upstream, request: UpstreamRequest, policy: RetryPolicy
) -> tuple[UpstreamResponse, Replica]:
    """The answer's head and the replica that gave it; that replica's in-flight count stays
    raised until the caller has relayed the body and called `done(replica)`."""
    breaker = upstream.breaker
    if not breaker.allow():
        raise UpstreamUnavailable(
            f"{upstream.name} is unavailable (circuit open)", retry_after=breaker.retry_after()
        )
    probe = breaker.state is BreakerState.HALF_OPEN
    try:
        answer = await _attempts(upstream, request, policy)
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
    return answer


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
    if request.body_started():
        return False
    return kind.unsent or (kind is FailureKind.DISCONNECT and request.replayable)


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
