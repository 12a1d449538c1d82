"""Property test: no login input, as JSON or as a form, gets anything but 200, 401 or 422."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from user_service.config import Settings

PASSWORD = "correct horse battery staple"
any_text = st.text(st.characters(), max_size=300)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Throttling off for this module: every example should reach the password check."""
    return settings.model_copy(
        update={
            "login_failures_per_pair": 10**6,
            "login_failures_per_account": 10**6,
            "login_failures_per_address": 10**6,
        }
    )


@pytest.fixture
async def alice(api) -> dict:
    assert api.app.state.login_throttle.thresholds == (10**6, 10**6, 10**6)
    return await api.register(username="alice")


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    username=any_text | st.sampled_from(["alice", "ALICE", "alice@example.com"]),
    password=any_text | st.just(PASSWORD) | st.text(min_size=129, max_size=5000),
    as_form=st.booleans(),
)
async def test_arbitrary_credentials_are_never_a_server_error(
    client: httpx.AsyncClient, alice: dict, username: str, password: str, as_form: bool
) -> None:
    if as_form:
        # A form carries UTF-8 text: lone surrogates cannot be sent, so they are replaced.
        fields = {
            "username": username.encode("utf-8", "replace").decode("utf-8"),
            "password": password.encode("utf-8", "replace").decode("utf-8"),
        }
        response = await client.post("/api/v1/auth/login", data=fields)
    else:
        response = await client.post(
            "/api/v1/auth/login",
            content=json.dumps({"username": username, "password": password}),
            headers={"content-type": "application/json"},
        )

    right = username.lower() in {"alice", "alice@example.com"} and password == PASSWORD
    assert response.status_code in ((200,) if right else (401, 422)), response.text
    if response.status_code != 200 and len(password) >= 8 and password in response.text:
        # Only an echo if it is not part of the fixed wording ("Incorrect username or
        # password"): the same request with another secret must not contain it.
        other = await client.post(
            "/api/v1/auth/login",
            content=json.dumps({"username": username, "password": "#" * len(password)}),
            headers={"content-type": "application/json"},
        )
        assert password in other.text, "the password was echoed"
