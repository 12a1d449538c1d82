from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from taskflow_kit.tokens import (
    MAX_USER_ID,
    InvalidTokenError,
    TokenConfig,
    decode_token,
    issue_token,
    subject_id,
)


def test_round_trip_carries_claims(token_config: TokenConfig) -> None:
    token = issue_token(
        token_config,
        subject="42",
        token_type="access",
        ttl=timedelta(minutes=5),
        claims={"username": "ada"},
    )
    claims = decode_token(token_config, token, token_type="access")
    assert claims["sub"] == "42"
    assert claims["username"] == "ada"
    assert claims["type"] == "access"
    assert claims["iss"] == "taskflow"
    assert len(claims["jti"]) == 32


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenConfig(secret="short", issuer="i", audience="a")


def _payload(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    payload: dict[str, object] = {
        "sub": "1",
        "type": "access",
        "iss": "taskflow",
        "aud": "taskflow",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": "abc",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


BAD_TOKENS = {
    "expired": lambda c: jwt.encode(
        _payload(exp=datetime.now(UTC) - timedelta(seconds=30)), c.secret, "HS256"
    ),
    "wrong_key": lambda c: jwt.encode(_payload(), "another-secret-0123456789abcdef0123", "HS256"),
    "alg_none": lambda c: jwt.encode(_payload(), None, algorithm="none"),
    "wrong_issuer": lambda c: jwt.encode(_payload(iss="someone-else"), c.secret, "HS256"),
    "wrong_audience": lambda c: jwt.encode(_payload(aud="someone-else"), c.secret, "HS256"),
    "missing_exp": lambda c: jwt.encode(_payload(exp=None), c.secret, "HS256"),
    "missing_jti": lambda c: jwt.encode(_payload(jti=None), c.secret, "HS256"),
    "refresh_as_access": lambda c: jwt.encode(_payload(type="refresh"), c.secret, "HS256"),
    "garbage": lambda c: "not-a-jwt",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_are_rejected(token_config: TokenConfig, case: str) -> None:
    token = BAD_TOKENS[case](token_config)
    with pytest.raises(InvalidTokenError):
        decode_token(token_config, token, token_type="access")


def test_tampered_payload_is_rejected(token_config: TokenConfig) -> None:
    token = issue_token(token_config, subject="1", token_type="access", ttl=timedelta(minutes=5))
    header, payload, signature = token.split(".")
    forged = jwt.encode(_payload(sub="2"), "x" * 40, "HS256").split(".")[1]
    with pytest.raises(InvalidTokenError):
        decode_token(token_config, f"{header}.{forged}.{signature}", token_type="access")
    assert payload != forged


def test_a_few_seconds_of_clock_skew_are_tolerated(token_config: TokenConfig) -> None:
    now = datetime.now(UTC)
    just_expired = jwt.encode(_payload(exp=now - timedelta(seconds=2)), token_config.secret)
    from_a_fast_clock = jwt.encode(_payload(iat=now + timedelta(seconds=2)), token_config.secret)

    assert decode_token(token_config, just_expired, token_type="access")["sub"] == "1"
    assert decode_token(token_config, from_a_fast_clock, token_type="access")["sub"] == "1"


def test_an_oversized_token_is_refused_unread(token_config: TokenConfig) -> None:
    # Validly signed, but padded with a claim far beyond any token we issue.
    huge = jwt.encode(_payload(padding="x" * 5000), token_config.secret)

    with pytest.raises(InvalidTokenError, match="too long"):
        decode_token(token_config, huge, token_type="access")


@pytest.mark.parametrize("subject", ["1", "42", str(MAX_USER_ID)])
def test_a_subject_that_is_an_id_is_that_id(subject: str) -> None:
    assert subject_id({"sub": subject}) == int(subject)


@pytest.mark.parametrize("subject", ["0", "-3", str(MAX_USER_ID + 1), "alice", "", None, [1]])
def test_a_subject_that_is_no_id_we_issue_is_refused(subject: object) -> None:
    with pytest.raises(ValueError):
        subject_id({"sub": subject})
    with pytest.raises(ValueError):
        subject_id({})
