"""Validation sessions over the identity service's v1 door: expiry with a clock the
test moves, the clean-up, rate limits (per IP and per address), send errors, the
operator's templates, and local delivery to a hosted address."""

from __future__ import annotations

import email
import email.policy

import httpx

from postern.accounts.rate_limit import Policy
from postern.serve.runtime import Runtime
from postern.verification.sessions import MAIL_ACTION, REQUEST_ACTION
from tests.helpers import create_user, folder_id
from tests.http.identity_service.conftest import V1, mail_number, read_mail
from tests.sink import SmtpSink

SECRET = "s3cret"
HOUR = 3600 * 1000


class Clock:
    def __init__(self, now: int = 1_900_000_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now


async def request(client: httpx.AsyncClient, address: str, secret: str = SECRET, **extra: object) -> httpx.Response:
    return await client.post(
        f"{V1}/validate/email/requestToken",
        json={"client_secret": secret, "email": address, **extra},
    )


async def submit(client: httpx.AsyncClient, sid: str, token: str, secret: str = SECRET) -> httpx.Response:
    return await client.post(
        f"{V1}/validate/email/submitToken",
        json={"sid": sid, "client_secret": secret, "token": token},
    )


async def validated(client: httpx.AsyncClient, sid: str, secret: str = SECRET) -> httpx.Response:
    return await client.get(f"{V1}/3pid/getValidated3pid", params={"sid": sid, "client_secret": secret})


async def test_sessions_expire_a_day_after_their_last_change(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    clock = Clock()
    runtime.validation.clock = clock
    sid = (await request(identity, "late@example.net", send_attempt=1)).json()["sid"]
    token = (await mail_number(internet, 1)).token

    clock.now += 23 * HOUR  # a reminder: the session changes, its day starts again
    assert (await request(identity, "late@example.net", send_attempt=2)).json()["sid"] == sid
    await mail_number(internet, 2)
    clock.now += 23 * HOUR
    assert (await submit(identity, sid, token)).status_code == 200
    # A validated session may be used for a day after its validation.
    clock.now += 23 * HOUR
    assert (await validated(identity, sid)).status_code == 200
    clock.now += 2 * HOUR
    response = await validated(identity, sid)
    assert response.status_code == 400 and response.json()["errcode"] == "M_SESSION_EXPIRED"

    # An unvalidated session past its day cannot be validated; asking again starts a
    # new one (and mails a new token).
    other = (await request(identity, "never@example.net")).json()["sid"]
    old_token = (await mail_number(internet, 3)).token
    clock.now += 24 * HOUR + 1
    response = await submit(identity, other, old_token)
    assert response.status_code == 400 and response.json()["errcode"] == "M_SESSION_EXPIRED"
    response = await validated(identity, other)
    assert response.status_code == 400 and response.json()["errcode"] == "M_SESSION_EXPIRED"
    fresh = (await request(identity, "never@example.net")).json()["sid"]
    assert fresh != other
    assert (await mail_number(internet, 4)).token != old_token

    # The collector deletes what is past its day (the validated session of the
    # first address; the other expired one was replaced already), and nothing else.
    assert await runtime.validation.expire() == 1
    response = await validated(identity, sid)
    assert response.status_code == 400 and response.json()["errcode"] == "M_NO_VALID_SESSION"
    response = await validated(identity, fresh)
    assert response.json()["errcode"] == "M_SESSION_NOT_VALIDATED"


async def test_mail_to_one_address_is_limited(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    runtime.rate_limiter.policies[MAIL_ACTION] = Policy(per_ip=100, per_account=2, window_s=3600)
    assert (await request(identity, "bomb@example.net", "a")).status_code == 200
    assert (await request(identity, "bomb@example.net", "b")).status_code == 200
    await mail_number(internet, 2)
    # A third mail to the same address, whatever the secret or the spelling.
    response = await request(identity, "BOMB@example.net", "c")
    assert response.status_code == 429
    body = response.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
    # Asking again for a session that mails nothing is no mail.
    assert (await request(identity, "bomb@example.net", "a")).status_code == 200
    # Another address is not limited by this one.
    assert (await request(identity, "other@example.net", "a")).status_code == 200
    await mail_number(internet, 3)


async def test_requests_from_one_ip_are_limited(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    runtime.rate_limiter.policies[REQUEST_ACTION] = Policy(per_ip=2, per_account=100, window_s=3600)
    assert (await request(identity, "one@example.net")).status_code == 200
    assert (await request(identity, "one@example.net")).status_code == 200
    response = await request(identity, "two@example.net")
    assert response.status_code == 429 and response.json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert response.json()["retry_after_ms"] >= 1000
    await mail_number(internet, 1)


async def test_wrong_tokens_are_limited(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    runtime.rate_limiter.policies["identity_submit"] = Policy(per_ip=3, per_account=3, window_s=900)
    sid = (await request(identity, "guess@example.net")).json()["sid"]
    token = (await mail_number(internet, 1)).token
    for _ in range(3):
        assert (await submit(identity, sid, "0" * 64)).json()["errcode"] == "M_TOKEN_INCORRECT"
    response = await submit(identity, sid, token)
    assert response.status_code == 429 and response.json()["errcode"] == "M_LIMIT_EXCEEDED"


async def test_a_send_error_leaves_no_session(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    real = runtime.outbound.enqueue

    async def broken(**_: object) -> str:
        raise OSError("disk full")

    runtime.outbound.enqueue = broken  # type: ignore[method-assign]
    response = await request(identity, "fail@example.net", send_attempt=1)
    assert response.status_code == 400 and response.json()["errcode"] == "M_EMAIL_SEND_ERROR"
    runtime.outbound.enqueue = real  # type: ignore[method-assign]
    # The same request again mails (nothing was kept of the failed one).
    response = await request(identity, "fail@example.net", send_attempt=1)
    assert response.status_code == 200
    await mail_number(internet, 1)


async def test_operator_templates(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "validation.subject").write_text("Bitte bestätigen: $address\n", "utf-8")
    (tmp_path / "validation.html").write_text("<p><a href='$link'>$address</a></p>", "utf-8")
    runtime.validation.mailer.templates_dir = tmp_path
    internet.serve_domain("xn--bcher-kva.example")
    await request(identity, "<b>@bücher.example")
    response = await request(identity, "ann@bücher.example")
    assert response.status_code == 200
    mail = await mail_number(internet, 1)
    raw = internet.received[0].data
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert subject_line.isascii() and b"=?utf-8?" in subject_line.lower()  # RFC 2047, not raw UTF-8
    assert mail.message["Subject"] == "Bitte bestätigen: ann@bücher.example"
    assert "&amp;client_secret=" in mail.html  # values escaped in the HTML
    assert "Or enter this code" in mail.text  # the default text stays


async def test_hosted_addresses_get_the_mail_locally(client: httpx.AsyncClient, identity: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await create_user(client, "hosted", address="hosted@example.com")
    response = await request(identity, "hosted@example.com")
    assert response.status_code == 200, response.text
    inbox = await folder_id(client, user)
    listing = (await client.get(f"/users/{user}/mailboxes/{inbox}/messages")).json()["results"]
    assert len(listing) == 1
    raw = (await client.get(f"/users/{user}/mailboxes/{inbox}/messages/{listing[0]['id']}/message.eml")).content
    mail = read_mail(raw, ["hosted@example.com"])
    assert (await submit(identity, response.json()["sid"], mail.token)).status_code == 200
    assert email.message_from_bytes(raw, policy=email.policy.default)["To"] == "hosted@example.com"


async def test_the_garbage_collector_deletes_expired_sessions(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    import asyncio

    from postern.serve.server import _collect_garbage

    clock = Clock()
    runtime.validation.clock = clock
    sid = (await request(identity, "old@example.net")).json()["sid"]
    await mail_number(internet, 1)
    clock.now += 24 * HOUR + 1
    collector = asyncio.create_task(_collect_garbage(runtime, 0.01))
    try:
        for _ in range(500):
            if (await validated(identity, sid)).json()["errcode"] == "M_NO_VALID_SESSION":
                break
            await asyncio.sleep(0.02)
        assert (await validated(identity, sid)).json()["errcode"] == "M_NO_VALID_SESSION"
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
