"""TokenVerifier: a token's signature and claims are verified once until it expires; revocation
is checked on every call."""

from __future__ import annotations

import datetime as dt

import pytest
from taskflow_kit import auth
from taskflow_kit.auth import TokenVerifier
from taskflow_kit.errors import Unauthorized
from taskflow_kit.revocation import Revocation, RevocationList
from taskflow_kit.tokens import TokenConfig, issue_token


def access_token(config: TokenConfig, user_id: int, *, ttl: float = 300.0) -> str:
    return issue_token(
        config,
        subject=str(user_id),
        token_type="access",
        ttl=dt.timedelta(seconds=ttl),
        claims={"username": f"u{user_id}", "sid": f"s{user_id}"},
    )


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the verifier decoded (signature and claims checked), in order."""
    seen: list[str] = []
    real = auth.decode_token

    def counting(config: TokenConfig, token: str, **kwargs: object) -> dict[str, object]:
        seen.append(token)
        return real(config, token, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "decode_token", counting)
    return seen


def test_a_token_is_verified_once_while_it_is_valid(
    token_config: TokenConfig, decodes: list[str]
) -> None:
    verifier = TokenVerifier(token_config, RevocationList())
    token = access_token(token_config, 3)
    principals = [verifier.principal(token) for _ in range(5)]
    assert {principal.id for principal in principals} == {3}
    assert decodes == [token]


def test_revocation_is_checked_on_every_call(token_config: TokenConfig, decodes: list[str]) -> None:
    revocations = RevocationList()
    verifier = TokenVerifier(token_config, revocations)
    token = access_token(token_config, 4)
    assert verifier.principal(token).session_id == "s4"
    revocations.apply(Revocation(4, session_id="s4"))
    with pytest.raises(Unauthorized, match="revoked"):
        verifier.principal(token)
    assert decodes == [token]  # refused from the remembered claims, without a new decode


def test_a_remembered_token_is_verified_again_once_it_has_expired(
    token_config: TokenConfig, decodes: list[str]
) -> None:
    now = [dt.datetime.now(dt.UTC).timestamp()]
    verifier = TokenVerifier(token_config, clock=lambda: now[0])
    token = access_token(token_config, 5, ttl=60)
    expires_at = verifier.principal(token).expires_at
    now[0] = expires_at - 1
    verifier.principal(token)
    assert len(decodes) == 1
    now[0] = expires_at  # the verifier's clock says expired: PyJWT decides again
    verifier.principal(token)
    assert len(decodes) == 2


def test_an_expired_or_forged_token_is_never_remembered(
    token_config: TokenConfig, decodes: list[str]
) -> None:
    verifier = TokenVerifier(token_config)
    expired = issue_token(
        token_config,
        subject="6",
        token_type="access",
        ttl=dt.timedelta(seconds=1),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    )
    forged = access_token(token_config, 6)[:-2] + "AA"
    for token in (expired, forged, expired):
        with pytest.raises(Unauthorized):
            verifier.principal(token)
    assert decodes == [expired, forged, expired]


def test_the_memory_is_bounded(token_config: TokenConfig, decodes: list[str]) -> None:
    verifier = TokenVerifier(token_config, cache_size=2)
    tokens = [access_token(token_config, user_id) for user_id in (1, 2, 3)]
    for token in tokens:
        verifier.principal(token)
    assert len(verifier._verified) <= 2
    assert [verifier.principal(token).id for token in tokens] == [1, 2, 3]
