"""The harness itself: a real process can be started, frozen, killed and brought back, and a
process that cannot start is reported with its log."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.harness import StartupError, Suite, require_services, start_and_wait

require_services("user_service")
pytestmark = pytest.mark.suite


def test_process_control(suite: Suite) -> None:
    probe = suite.add_process(
        "user-service-probe",
        "user_service",
        suite.base_env()
        | {
            "USER_SERVICE_DATABASE_URL": suite.users_db,
            "BCRYPT_ROUNDS": "4",
        },
    )
    try:
        start_and_wait([probe])
        assert httpx.get(f"{probe.url}/health", timeout=1.0).status_code == 200

        probe.pause()
        with pytest.raises(httpx.ReadTimeout):  # the kernel accepts, nobody answers
            httpx.get(f"{probe.url}/health", timeout=0.5)
        probe.resume()
        assert httpx.get(f"{probe.url}/health", timeout=2.0).status_code == 200

        probe.kill()
        assert not probe.running
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{probe.url}/health", timeout=1.0)

        probe.ensure_running()
        assert httpx.get(f"{probe.url}/health", timeout=1.0).status_code == 200
        assert probe.starts == 2
        assert probe.log_text().count("===== start #") == 2
    finally:
        probe.stop()
    assert not probe.running


def test_a_process_that_cannot_start_is_reported_with_its_log(suite: Suite) -> None:
    broken = suite.add_process(
        "user-service-broken", "user_service", suite.base_env() | {"JWT_SECRET": "too short"}
    )
    with pytest.raises(StartupError) as failure:
        start_and_wait([broken], timeout=30)
    assert "exited" in str(failure.value)
    assert "--- last" in str(failure.value)
    assert "JWT_SECRET" in str(failure.value)


def test_a_suite_leaves_no_key_of_its_own_in_the_shared_redis(tmp_path: Path) -> None:
    import redis

    suite = Suite(log_dir=tmp_path)
    other = Suite(log_dir=tmp_path)
    client = redis.Redis.from_url(suite.redis_url)
    try:
        client.set(f"{suite.redis_prefix}events:epoch:user-service", "1")
        client.hset(f"{suite.redis_prefix}revocation:users", "7", "1")
        client.set(f"{other.redis_prefix}kept", "1")
        suite.drop_redis_keys()
        assert list(client.scan_iter(match=f"{suite.redis_prefix}*")) == []
        assert client.get(f"{other.redis_prefix}kept") == b"1"  # another run's keys stay
    finally:
        other.drop_redis_keys()
        client.close()
