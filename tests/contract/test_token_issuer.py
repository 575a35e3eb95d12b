"""Contract of TokenIssuer, then what only the JWT adapter promises."""

from __future__ import annotations

import base64
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from engage_adapters.jwt_tokens import JwtTokenIssuer
from engage_core.errors import Unauthorized
from engage_core.ports import AccessClaims, TokenIssuer
from engage_core.testing import FakeClock

SECRET = b"s" * 32  # what the "jwt" entry in conftest is built with
ISSUER = AUDIENCE = "engage-suite"  # JwtTokenIssuer's defaults

GARBAGE_TOKENS = {
    "empty": "",
    "word": "garbage",
    "three-dots": "a.b.c",
    "two-empty-segments": "..",
    "non-ascii": "ünïcødé.ünïcødé.ünïcødé",
    "fake-prefix": "fake.",
    "header-only": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..",
    "very-long": "x" * 5000,
}


def _claims(now: datetime, *, expires_in: timedelta = timedelta(minutes=15)) -> AccessClaims:
    return AccessClaims(
        user_id=uuid4(),
        session_id=uuid4(),
        issued_at=now,
        expires_at=now + expires_in,
    )


def _with_one_character_changed(token: str, index: int) -> str:
    if token[index] == ".":
        index += 1
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


# --- every implementation -------------------------------------------------------


async def test_issued_claims_round_trip(token_issuer: TokenIssuer, clock: FakeClock) -> None:
    claims = _claims(clock.now(), expires_in=timedelta(minutes=15, microseconds=500_000))

    verified = await token_issuer.verify(await token_issuer.issue(claims))

    assert verified.user_id == claims.user_id
    assert verified.session_id == claims.session_id
    assert verified.expires_at.utcoffset() == timedelta(0)
    assert verified.expires_at.replace(microsecond=0) == claims.expires_at.replace(microsecond=0)


async def test_each_token_carries_its_own_claims(
    token_issuer: TokenIssuer, clock: FakeClock
) -> None:
    first, second = _claims(clock.now()), _claims(clock.now())

    first_token = await token_issuer.issue(first)
    second_token = await token_issuer.issue(second)

    assert (await token_issuer.verify(first_token)).user_id == first.user_id
    assert (await token_issuer.verify(second_token)).user_id == second.user_id


@pytest.mark.parametrize("token", list(GARBAGE_TOKENS.values()), ids=list(GARBAGE_TOKENS))
async def test_garbage_is_unauthorized(token_issuer: TokenIssuer, token: str) -> None:
    with pytest.raises(Unauthorized):
        await token_issuer.verify(token)


# Not the last character: in base64 its low bits may be padding that decoding ignores.
@pytest.mark.parametrize("where", ["first", "middle", "last-but-one"])
async def test_a_token_with_one_character_changed_is_unauthorized(
    token_issuer: TokenIssuer, clock: FakeClock, where: str
) -> None:
    token = await token_issuer.issue(_claims(clock.now()))
    index = {"first": 0, "middle": len(token) // 2, "last-but-one": len(token) - 2}[where]

    with pytest.raises(Unauthorized):
        await token_issuer.verify(_with_one_character_changed(token, index))


async def test_an_expired_token_is_unauthorized(
    token_issuer: TokenIssuer, clock: FakeClock
) -> None:
    claims = _claims(clock.now() - timedelta(minutes=20), expires_in=timedelta(minutes=15))

    token = await token_issuer.issue(claims)

    with pytest.raises(Unauthorized):
        await token_issuer.verify(token)


async def test_a_token_is_unauthorized_from_its_expiry_on(
    token_issuer: TokenIssuer, clock: FakeClock
) -> None:
    claims = _claims(clock.now() - timedelta(minutes=15), expires_in=timedelta(minutes=15))

    token = await token_issuer.issue(claims)

    with pytest.raises(Unauthorized):
        await token_issuer.verify(token)


# --- JWT only -------------------------------------------------------------------


def _payload(now: datetime | None = None, **changes: Any) -> dict[str, Any]:
    moment = int((now or datetime.now(UTC)).timestamp())
    payload: dict[str, Any] = {
        "sub": str(uuid4()),
        "sid": str(uuid4()),
        "iat": moment,
        "exp": moment + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    payload.update(changes)
    return payload


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature)]
    )


@pytest.fixture
def issuer() -> JwtTokenIssuer:
    return JwtTokenIssuer(SECRET)


async def test_jwt_accepts_a_well_formed_token_built_by_hand(issuer: JwtTokenIssuer) -> None:
    payload = _payload()

    claims = await issuer.verify(jwt.encode(payload, SECRET, algorithm="HS256"))

    assert str(claims.user_id) == payload["sub"]
    assert str(claims.session_id) == payload["sid"]
    assert claims.expires_at == datetime.fromtimestamp(payload["exp"], UTC)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_jwt_refuses_alg_none(issuer: JwtTokenIssuer, alg: str) -> None:
    token = _forged({"alg": alg, "typ": "JWT"}, _payload())

    with pytest.raises(Unauthorized):
        await issuer.verify(token)


async def test_jwt_refuses_alg_none_built_by_pyjwt(issuer: JwtTokenIssuer) -> None:
    token = jwt.encode(_payload(), None, algorithm="none")

    with pytest.raises(Unauthorized):
        await issuer.verify(token)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_jwt_refuses_another_algorithm_with_the_same_secret(
    issuer: JwtTokenIssuer, algorithm: str
) -> None:
    with warnings.catch_warnings():  # the secret is short for these; beside the point here
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = jwt.encode(_payload(), SECRET, algorithm=algorithm)

    with pytest.raises(Unauthorized):
        await issuer.verify(token)


async def test_jwt_refuses_a_token_signed_with_another_secret(issuer: JwtTokenIssuer) -> None:
    token = jwt.encode(_payload(), b"t" * 32, algorithm="HS256")

    with pytest.raises(Unauthorized):
        await issuer.verify(token)


async def test_jwt_refuses_a_valid_signature_over_another_payload(
    issuer: JwtTokenIssuer,
) -> None:
    genuine = jwt.encode(_payload(), SECRET, algorithm="HS256")
    other = jwt.encode(_payload(), SECRET, algorithm="HS256")
    header, _, signature = genuine.split(".")
    spliced = ".".join([header, other.split(".")[1], signature])

    with pytest.raises(Unauthorized):
        await issuer.verify(spliced)


@pytest.mark.parametrize("claim", ["sub", "sid", "iat", "exp", "iss", "aud"])
async def test_jwt_refuses_a_token_missing_a_claim(issuer: JwtTokenIssuer, claim: str) -> None:
    payload = _payload()
    del payload[claim]

    with pytest.raises(Unauthorized):
        await issuer.verify(jwt.encode(payload, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"iss": "someone-else"}, id="wrong-iss"),
        pytest.param({"aud": "someone-else"}, id="wrong-aud"),
        pytest.param({"aud": ["someone-else"]}, id="wrong-aud-list"),
        pytest.param({"sub": "not-a-uuid"}, id="sub-not-uuid"),
        pytest.param({"sub": ""}, id="sub-empty"),
        pytest.param({"sub": 42}, id="sub-number"),
        pytest.param({"sid": "not-a-uuid"}, id="sid-not-uuid"),
        pytest.param({"sid": None}, id="sid-null"),
        pytest.param({"exp": "tomorrow"}, id="exp-not-number"),
        pytest.param({"iat": "today"}, id="iat-not-number"),
    ],
)
async def test_jwt_refuses_a_token_with_a_bad_claim(
    issuer: JwtTokenIssuer, changes: dict[str, Any]
) -> None:
    token = jwt.encode(_payload(**changes), SECRET, algorithm="HS256")

    with pytest.raises(Unauthorized):
        await issuer.verify(token)


@pytest.mark.parametrize("secret", [b"", b"s" * 31])
def test_jwt_refuses_a_secret_under_32_bytes(secret: bytes) -> None:
    with pytest.raises(ValueError, match="secret"):
        JwtTokenIssuer(secret)


@pytest.mark.parametrize("algorithm", ["none", "RS256", "ES256", "hs256", "HS1", ""])
def test_jwt_refuses_an_unknown_algorithm(algorithm: str) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        JwtTokenIssuer(SECRET, algorithm=algorithm)


# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
@pytest.mark.parametrize(("algorithm", "needed"), [("HS384", 48), ("HS512", 64)])
def test_jwt_refuses_a_secret_shorter_than_its_algorithm_hash(algorithm: str, needed: int) -> None:
    with pytest.raises(ValueError, match="secret"):
        JwtTokenIssuer(b"s" * (needed - 1), algorithm=algorithm)


@pytest.mark.parametrize(("algorithm", "needed"), [("HS384", 48), ("HS512", 64)])
async def test_jwt_round_trips_with_each_algorithm_and_a_long_enough_secret(
    algorithm: str, needed: int
) -> None:
    issuer = JwtTokenIssuer(b"s" * needed, algorithm=algorithm)
    claims = _claims(datetime.now(UTC).replace(microsecond=0))

    verified = await issuer.verify(await issuer.issue(claims))

    assert verified == claims
