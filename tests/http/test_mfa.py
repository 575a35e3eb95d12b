"""The second factor over HTTP: TOTP set-up, login and token with a challenge, recovery
codes, disable; and what it refuses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest

from engage_adapters.secret_box import FernetSecretBox
from engage_core.testing import FakeClock, FakePasswordHasher

PASSWORD = "correct horse battery staple"
Problem = Callable[..., dict[str, Any]]
Rows = Callable[..., list[tuple[Any, ...]]]
Browser = Callable[[], httpx.AsyncClient]


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    # Above the 5 codes a challenge allows, so a spent challenge is told from a lock.
    return {**environ, "ENGAGE_LOGIN_FAILURES_PER_EMAIL": "7"}


class Totp:
    """The authenticator app: codes for the set-up's secret at the server's clock."""

    def __init__(self, secret: str, clock: FakeClock) -> None:
        self.totp = pyotp.TOTP(secret)
        self.clock = clock

    def code(self, steps_from_now: int = 0) -> str:
        step = int(self.clock.now().timestamp()) // 30 + steps_from_now
        return self.totp.generate_otp(step)


@pytest.fixture
async def auth(api: Any) -> dict[str, str]:
    """Ada, signed up, with a bearer token."""
    headers: dict[str, str] = await api.new_user("ada@example.com")
    return headers


async def set_up(api: Any, auth: dict[str, str], clock: FakeClock) -> tuple[Totp, list[str]]:
    """Turn the second factor on; the app (with the step before now used up) and the codes."""
    started = await api.client.post("/api/auth/mfa/totp", headers=auth)
    assert started.status_code == 200, started.text
    app = Totp(started.json()["secret"], clock)
    confirmed = await api.client.post(
        "/api/auth/mfa/totp/confirm", json={"code": app.code(-1)}, headers=auth
    )
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    return app, codes


async def challenge(client: httpx.AsyncClient, path: str = "/api/auth/login") -> str:
    response = await client.post(path, json={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True
    assert set(body) == {"mfa_required", "challenge", "expires_at"}
    assert not [c for c in response.headers.get_list("set-cookie") if c.startswith("engage_")]
    token: str = body["challenge"]
    return token


async def verify(client: httpx.AsyncClient, token: str, code: str) -> httpx.Response:
    return await client.post("/api/auth/mfa/verify", json={"challenge": token, "code": code})


async def test_set_up_returns_the_secret_uri_and_qr_code_and_is_not_on_until_confirmed(
    api: Any, auth: dict[str, str], clock: FakeClock
) -> None:
    started = await api.client.post("/api/auth/mfa/totp", headers=auth)

    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/engage-suite:ada%40example.com?")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg")
    assert (await api.client.get("/api/auth/me", headers=auth)).json()["mfa_enabled"] is False
    await api.bearer("ada@example.com")  # a password alone still signs in

    app = Totp(body["secret"], clock)
    confirmed = await api.client.post(
        "/api/auth/mfa/totp/confirm", json={"code": app.code()}, headers=auth
    )

    codes = confirmed.json()["recovery_codes"]
    assert len(set(codes)) == 10
    assert (await api.client.get("/api/auth/me", headers=auth)).json()["mfa_enabled"] is True
    status = await api.client.get("/api/auth/mfa", headers=auth)
    assert status.json() == {"enabled": True, "recovery_codes_left": 10}


async def test_with_mfa_on_a_password_alone_gets_no_session_and_a_code_does(
    api: Any, auth: dict[str, str], clock: FakeClock, new_browser: Browser
) -> None:
    app, _ = await set_up(api, auth, clock)
    browser = new_browser()

    token = await challenge(browser)
    assert (await browser.get("/api/auth/me")).status_code == 401

    done = await verify(browser, token, app.code())

    assert done.status_code == 200, done.text
    assert done.json()["user"]["email"] == "ada@example.com"
    assert (await browser.get("/api/auth/me")).status_code == 200


async def test_a_token_login_waits_for_the_code_too(
    api: Any, auth: dict[str, str], clock: FakeClock
) -> None:
    app, _ = await set_up(api, auth, clock)

    token = await challenge(api.client, "/api/auth/token")
    done = await verify(api.client, token, app.code())

    assert done.status_code == 200, done.text
    assert done.json()["token_type"] == "bearer"
    bearer = {"Authorization": f"Bearer {done.json()['access_token']}"}
    assert (await api.client.get("/api/auth/me", headers=bearer)).status_code == 200


async def test_a_login_waiting_for_its_code_ends_when_the_password_changes(
    api: Any, auth: dict[str, str], clock: FakeClock, new_browser: Browser, expect_problem: Problem
) -> None:
    app, _ = await set_up(api, auth, clock)
    other = new_browser()
    waiting = await challenge(other)  # the password was right: only the code is missing

    changed = await api.client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=auth,
    )
    assert changed.status_code == 204, changed.text

    ended = expect_problem(await verify(other, waiting, app.code()), 401)
    assert ended["type"] == "urn:engage-suite:problem:challenge-ended"
    assert (await other.get("/api/auth/me")).status_code == 401
    assert (await api.client.get("/api/auth/me", headers=auth)).status_code == 200


async def test_neither_the_challenge_nor_the_token_it_gives_is_stored(
    api: Any, auth: dict[str, str], clock: FakeClock, new_browser: Browser
) -> None:
    app, _ = await set_up(api, auth, clock)
    fresh = new_browser()  # no cookie and no Authorization: only the body is a credential

    started = await fresh.post(
        "/api/auth/token", json={"email": "ada@example.com", "password": PASSWORD}
    )
    done = await verify(fresh, started.json()["challenge"], app.code())

    assert done.status_code == 200, done.text
    for response in (started, done):
        assert "set-cookie" not in response.headers
        assert response.headers["cache-control"] == "no-store"  # RFC 6749 §5.1


async def test_a_code_is_accepted_once_and_within_one_step(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    app, _ = await set_up(api, auth, clock)  # used the step before now
    assert (await verify(api.client, await challenge(api.client), app.code())).status_code == 200

    # Replayed in the same step: refused, as is any code of a step used before.
    expect_problem(await verify(api.client, await challenge(api.client), app.code()), 401)
    expect_problem(await verify(api.client, await challenge(api.client), app.code(-1)), 401)
    # Two steps ahead is beyond the skew allowed; one step ahead is within it.
    expect_problem(await verify(api.client, await challenge(api.client), app.code(2)), 401)
    assert (await verify(api.client, await challenge(api.client), app.code(1))).status_code == 200


async def test_a_challenge_allows_five_codes(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    app, _ = await set_up(api, auth, clock)
    token = await challenge(api.client)
    for _ in range(5):
        wrong = expect_problem(await verify(api.client, token, "000000"), 401)
        assert wrong["type"] == "urn:engage-suite:problem:unauthorized"  # another code may do

    used_up = expect_problem(await verify(api.client, token, app.code()), 401)
    assert used_up["type"] == "urn:engage-suite:problem:challenge-ended"  # no code will do

    assert (await verify(api.client, await challenge(api.client), app.code())).status_code == 200


async def test_a_challenge_lives_five_minutes(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    app, _ = await set_up(api, auth, clock)
    token = await challenge(api.client)

    clock.advance(timedelta(minutes=5, seconds=1))

    expired = expect_problem(await verify(api.client, token, app.code()), 401)
    assert expired["type"] == "urn:engage-suite:problem:challenge-ended"


async def test_wrong_codes_count_towards_the_failed_login_limit(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    app, _ = await set_up(api, auth, clock)
    for wrong_codes in (5, 2):
        token = await challenge(api.client)
        for _ in range(wrong_codes):
            expect_problem(await verify(api.client, token, "000000"), 401)

    # Seven failures: the email is locked, for the password and for codes alike.
    locked = await api.client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    expect_problem(locked, 429)
    expect_problem(await verify(api.client, token, app.code()), 429)


async def test_a_recovery_code_works_once(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    _, codes = await set_up(api, auth, clock)

    first = await verify(api.client, await challenge(api.client), codes[0].upper())

    assert first.status_code == 200, first.text
    expect_problem(await verify(api.client, await challenge(api.client), codes[0]), 401)
    status = await api.client.get("/api/auth/mfa", headers=auth)
    assert status.json()["recovery_codes_left"] == 9


async def test_new_recovery_codes_need_password_and_code_and_void_the_old(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    app, old = await set_up(api, auth, clock)
    path = "/api/auth/mfa/recovery-codes"

    wrong_password = {"password": "not the password", "code": app.code()}
    expect_problem(await api.client.post(path, json=wrong_password, headers=auth), 403)
    wrong_code = {"password": PASSWORD, "code": "000000"}
    expect_problem(await api.client.post(path, json=wrong_code, headers=auth), 403)
    fresh = await api.client.post(
        path, json={"password": PASSWORD, "code": app.code()}, headers=auth
    )

    assert fresh.status_code == 200, fresh.text
    new = fresh.json()["recovery_codes"]
    assert not set(new) & set(old)
    expect_problem(await verify(api.client, await challenge(api.client), old[1]), 401)
    assert (await verify(api.client, await challenge(api.client), new[0])).status_code == 200


async def test_disable_needs_password_and_code_then_a_password_is_enough(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    app, codes = await set_up(api, auth, clock)
    path = "/api/auth/mfa/disable"

    expect_problem(
        await api.client.post(
            path, json={"password": "wrong password", "code": codes[0]}, headers=auth
        ),
        403,
    )
    missing_code = await api.client.post(path, json={"password": PASSWORD}, headers=auth)
    expect_problem(missing_code, missing_code.status_code)
    assert missing_code.status_code in (400, 422)
    disabled = await api.client.post(
        path, json={"password": PASSWORD, "code": codes[0]}, headers=auth
    )

    assert disabled.status_code == 204, disabled.text
    await api.bearer("ada@example.com")
    assert (await api.client.get("/api/auth/me", headers=auth)).json()["mfa_enabled"] is False
    expect_problem(
        await api.client.post(path, json={"password": PASSWORD, "code": app.code()}, headers=auth),
        409,
    )


@pytest.mark.parametrize("path", ["/api/auth/mfa/disable", "/api/auth/mfa/recovery-codes"])
async def test_a_wrong_password_and_a_wrong_code_get_the_same_answer(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem, path: str
) -> None:
    app, _ = await set_up(api, auth, clock)

    # Whoever holds a stolen session must not learn which of the two they got right.
    wrong_password = await api.client.post(
        path, json={"password": "not the password", "code": app.code()}, headers=auth
    )
    wrong_code = await api.client.post(
        path, json={"password": PASSWORD, "code": "000000"}, headers=auth
    )

    assert expect_problem(wrong_password, 403) == expect_problem(wrong_code, 403)


async def test_a_code_typed_in_other_digits_is_the_same_code(
    api: Any, auth: dict[str, str], clock: FakeClock
) -> None:
    started = await api.client.post("/api/auth/mfa/totp", headers=auth)
    app = Totp(started.json()["secret"], clock)

    def in_script(code: str, zero: int) -> str:
        return "".join(chr(zero + int(digit)) for digit in code)

    # As a phone keyboard types them: Arabic-Indic, then full-width digits.
    confirmed = await api.client.post(
        "/api/auth/mfa/totp/confirm", json={"code": in_script(app.code(-1), 0x660)}, headers=auth
    )
    assert confirmed.status_code == 200, confirmed.text
    done = await verify(api.client, await challenge(api.client), in_script(app.code(), 0xFF10))

    assert done.status_code == 200, done.text


async def test_set_up_and_confirm_refuse_what_does_not_fit(
    api: Any, auth: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    confirm = "/api/auth/mfa/totp/confirm"
    expect_problem(await api.client.post(confirm, json={"code": "123456"}, headers=auth), 409)
    started = await api.client.post("/api/auth/mfa/totp", headers=auth)
    app = Totp(started.json()["secret"], clock)

    # A wrong code is refused as a wrong password is; only what is no code is invalid.
    for wrong in ("12345", app.code(3)):
        expect_problem(await api.client.post(confirm, json={"code": wrong}, headers=auth), 403)
    expect_problem(
        await api.client.post(confirm, json={"code": 123456}, headers=auth), 422, fields=["code"]
    )
    await api.client.post(confirm, json={"code": app.code()}, headers=auth)
    expect_problem(await api.client.post("/api/auth/mfa/totp", headers=auth), 409)


@pytest.mark.parametrize(
    "body",
    [
        {"challenge": "x" * 43, "code": "123456"},
        {"challenge": "", "code": "123456"},
        {"challenge": "x" * 300, "code": "123456"},
    ],
)
async def test_verify_refuses_unknown_challenges(
    api: Any, body: dict[str, str], expect_problem: Problem
) -> None:
    response = await api.client.post("/api/auth/mfa/verify", json=body)

    assert response.status_code in (401, 422)
    expect_problem(response, response.status_code)


async def test_unknown_email_and_wrong_password_answer_alike_with_mfa_on(
    api: Any, auth: dict[str, str], clock: FakeClock, hasher: FakePasswordHasher
) -> None:
    await set_up(api, auth, clock)
    answers = []
    for email, password in [
        ("ada@example.com", "not the password"),
        ("nobody@example.com", "not the password"),
    ]:
        calls = hasher.verify_calls
        response = await api.client.post(
            "/api/auth/login", json={"email": email, "password": password}
        )
        answers.append((response.status_code, response.json(), hasher.verify_calls - calls))

    assert answers[0] == answers[1]
    assert answers[0][0] == 401


async def test_the_secret_and_recovery_codes_are_not_stored_in_clear(
    api: Any, auth: dict[str, str], clock: FakeClock, db: Rows
) -> None:
    app, codes = await set_up(api, auth, clock)

    stored_secret = db("SELECT secret FROM user_totp")[0][0]
    hashes = {row[0] for row in db("SELECT code_hash FROM recovery_codes")}
    assert app.totp.secret not in stored_secret
    assert len(hashes) == 10
    assert not {c.replace("-", "") for c in codes} & hashes
    everything = str(db("SELECT * FROM activity")) + str(db("SELECT * FROM mfa_challenges"))
    assert app.totp.secret not in everything
    assert not any(c in everything for c in codes)


async def test_a_secret_no_configured_key_opens_is_a_503_for_the_operator_to_fix(
    api: Any,
    auth: dict[str, str],
    clock: FakeClock,
    db: Rows,
    expect_problem: Problem,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The key that sealed it is no longer in ENGAGE_ENCRYPTION_KEY: no 500, and a log
    line that says what to do."""
    app, _ = await set_up(api, auth, clock)
    elsewhere = FernetSecretBox([b"a key this deployment was never given, 32+ bytes"])
    db("UPDATE user_totp SET secret = %s RETURNING user_id", elsewhere.seal(app.totp.secret))

    token = await challenge(api.client)
    signing_in = await verify(api.client, token, app.code())
    turning_off = await api.client.post(
        "/api/auth/mfa/disable", json={"password": PASSWORD, "code": app.code(1)}, headers=auth
    )

    for response in (signing_in, turning_off):
        expect_problem(response, 503)
        assert int(response.headers["retry-after"]) > 0
    assert "ENGAGE_ENCRYPTION_KEY" in caplog.text
    assert "engage user mfa-reset" in caplog.text
