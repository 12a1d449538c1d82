"""Property tests of the registration rules: every input is 201, 409 or 422 as the rules say,
never a 500, and a rejected value is never echoed back."""

from __future__ import annotations

import itertools
import json
import re

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PASSWORD = "correct horse battery staple"
USERNAME = re.compile(r"[A-Za-z0-9._-]{3,50}")

# Any code point, including NUL and lone surrogates, which a JSON client can send as escapes.
any_text = st.text(st.characters(), max_size=220)
examples = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def storable(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


async def post_json(client: httpx.AsyncClient, path: str, body: dict) -> httpx.Response:
    # json.dumps escapes lone surrogates (\ud800), which httpx's own encoder would refuse.
    return await client.post(
        path, content=json.dumps(body), headers={"content-type": "application/json"}
    )


def assert_not_echoed(response: httpx.Response, value: str) -> None:
    if len(value) >= 8 and storable(value):
        assert value not in response.text
        assert json.dumps(value)[1:-1] not in response.text


@examples
@given(
    password=any_text
    | st.text(st.characters(codec="utf-8"), min_size=6, max_size=140)
    | st.text(st.sampled_from("aé漢🔑"), min_size=6, max_size=140)
)
async def test_password_rules(client: httpx.AsyncClient, password: str) -> None:
    serial = next(counter)
    body = {
        "email": f"p-user-{serial}@example.com",
        "username": f"p-user-{serial}",
        "password": password,
    }

    response = await post_json(client, "/api/v1/auth/register", body)

    valid = 8 <= len(password) <= 128 and storable(password)
    assert response.status_code == (201 if valid else 422), response.text
    if valid:
        # Never echoed: no field of the answer holds it (a short password may well occur in
        # the answer's field names or timestamps, e.g. "full_nam" or "2026-12").
        assert password not in [str(value) for value in response.json().values()]
        login = await post_json(
            client, "/api/v1/auth/login", {"username": f"p-user-{serial}", "password": password}
        )
        assert login.status_code == 200
    else:
        assert_not_echoed(response, password)


@examples
@given(username=any_text | st.from_regex(r"[A-Za-z0-9._-]{1,55}", fullmatch=True))
async def test_username_rules(client: httpx.AsyncClient, username: str) -> None:
    serial = next(counter)
    body = {"email": f"u-user-{serial}@example.com", "username": username, "password": PASSWORD}

    response = await post_json(client, "/api/v1/users/", body)

    if not USERNAME.fullmatch(username):
        assert response.status_code == 422, response.text
        assert_not_echoed(response, username)
    elif username.lower() in seen_usernames:
        assert response.status_code == 409
    else:
        assert response.status_code == 201, response.text
        seen_usernames.add(username.lower())


@examples
@given(email=st.emails() | any_text)
async def test_email_rules(client: httpx.AsyncClient, email: str) -> None:
    serial = next(counter)
    body = {"email": email, "username": f"e-user-{serial}", "password": PASSWORD}

    response = await post_json(client, "/api/v1/auth/register", body)

    assert response.status_code in (201, 409, 422), response.text
    if response.status_code == 422:
        assert_not_echoed(response, email)
    if response.status_code == 201:
        login = await post_json(
            client,
            "/api/v1/auth/login",
            {"username": response.json()["email"], "password": PASSWORD},
        )
        assert login.status_code == 200


@examples
@given(full_name=any_text)
async def test_full_name_rules(client: httpx.AsyncClient, full_name: str) -> None:
    serial = next(counter)
    body = {
        "email": f"f-user-{serial}@example.com",
        "username": f"f-user-{serial}",
        "password": PASSWORD,
        "full_name": full_name,
    }

    response = await post_json(client, "/api/v1/auth/register", body)

    valid = len(full_name) <= 200 and storable(full_name)
    assert response.status_code == (201 if valid else 422), response.text
    if valid:
        assert response.json()["full_name"] == full_name
    else:
        assert_not_echoed(response, full_name)


# Hypothesis runs many examples inside one test (one database state), so names stay unique.
counter = itertools.count()
seen_usernames: set[str] = set()
