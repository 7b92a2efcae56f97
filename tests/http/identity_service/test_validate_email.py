"""v1 email validation over HTTP, as the specification writes it: requestToken (JSON
and form), the token read from the mail that reached the SMTP sink, submitToken
(POST and the GET of the mailed link), getValidated3pid."""

from __future__ import annotations

import asyncio

import httpx

from postern.serve.runtime import Runtime
from tests.http.identity_service.conftest import V1, mail_number
from tests.sink import SmtpSink

SECRET = "monkeys_are_GREAT"


async def request_token(client: httpx.AsyncClient, email: str = "foo@example.net", **extra: object) -> httpx.Response:
    return await client.post(
        f"{V1}/validate/email/requestToken",
        json={"client_secret": SECRET, "email": email, **extra},
    )


async def test_full_flow_with_the_mailed_token(identity: httpx.AsyncClient, internet: SmtpSink) -> None:
    response = await identity.get(V1)
    assert response.status_code == 200 and response.json() == {}
    response = await request_token(identity, "Foo@Example.NET", send_attempt=1)
    assert response.status_code == 200, response.text
    sid = response.json()["sid"]
    assert isinstance(sid, str)

    mail = await mail_number(internet, 1)
    assert mail.to == ["foo@example.net"]
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert len(mail.token) >= 22 and len(mail.token) <= 255
    assert mail.token in mail.html and mail.token in mail.text
    assert mail.link_params == {
        "sid": sid,
        "client_secret": SECRET,
        "token": mail.token,
    }

    # Not validated yet.
    response = await identity.get(f"{V1}/3pid/getValidated3pid", params={"sid": sid, "client_secret": SECRET})
    assert response.status_code == 400 and response.json()["errcode"] == "M_SESSION_NOT_VALIDATED"

    response = await identity.post(
        f"{V1}/validate/email/submitToken",
        json={"sid": sid, "client_secret": SECRET, "token": mail.token},
    )
    assert response.status_code == 200 and response.json() == {"success": True}
    response = await identity.get(f"{V1}/3pid/getValidated3pid", params={"sid": sid, "client_secret": SECRET})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["medium"] == "email" and body["address"] == "foo@example.net" and isinstance(body["validated_at"], int)
    # Submitting again is still a success (the same proof).
    response = await identity.post(
        f"{V1}/validate/email/submitToken",
        json={"sid": sid, "client_secret": SECRET, "token": mail.token},
    )
    assert response.status_code == 200


async def test_form_encoded_bodies(identity: httpx.AsyncClient, internet: SmtpSink) -> None:
    response = await identity.post(
        f"{V1}/validate/email/requestToken",
        data={
            "client_secret": SECRET,
            "email": "form@example.net",
            "send_attempt": "1",
        },
    )
    assert response.status_code == 200, response.text
    sid = response.json()["sid"]
    mail = await mail_number(internet, 1)
    response = await identity.post(
        f"{V1}/validate/email/submitToken",
        data={"sid": sid, "client_secret": SECRET, "token": mail.token},
    )
    assert response.status_code == 200 and response.json() == {"success": True}


async def test_get_submit_token_answers_a_page_or_the_stored_redirect(identity: httpx.AsyncClient, internet: SmtpSink) -> None:
    response = await request_token(identity, "page@example.net")
    mail = await mail_number(internet, 1)
    path = mail.link.removeprefix("http://127.0.0.1:8080")
    assert path.startswith(f"{V1}/validate/email/submitToken?"), mail.link
    response = await identity.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "verified" in response.text

    # With a next_link: the redirect goes where the session says, whatever the
    # link's query adds.
    response = await identity.post(
        f"{V1}/validate/email/requestToken",
        json={
            "client_secret": "other",
            "email": "next@example.net",
            "next_link": "https://app.example.org/done?x=1",
        },
    )
    assert response.status_code == 200, response.text
    mail = await mail_number(internet, 2)
    params = {**mail.link_params, "next_link": "https://evil.example.com/"}
    response = await identity.get(f"{V1}/validate/email/submitToken", params=params)
    assert response.status_code == 302
    assert response.headers["location"] == "https://app.example.org/done?x=1"

    # A wrong token: a page, never JSON.
    response = await identity.get(
        f"{V1}/validate/email/submitToken",
        params={**mail.link_params, "token": "wrong"},
    )
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    response = await identity.get(f"{V1}/validate/email/submitToken", params={"sid": "1"})
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")


async def test_hostile_next_links_are_refused(identity: httpx.AsyncClient, runtime: Runtime) -> None:
    for link in (
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://user:pass@app.example.org/",
        "https://user@app.example.org/",
        "data:text/html,hi",
        "//app.example.org/",
        "https:///nohost",
        "https://app.example.org/\r\nLocation: x",
        "https://app.exa mple.org/",
    ):
        response = await request_token(identity, "hostile@example.net", next_link=link)
        assert response.status_code == 400, link
        assert response.json()["errcode"] == "M_INVALID_PARAM", link
    # The operator's allow-list: its domains and their subdomains only.
    runtime.validation.next_link_domains = ["example.org"]
    response = await request_token(identity, "hostile@example.net", next_link="https://app.evil.com/")
    assert response.status_code == 400 and response.json()["errcode"] == "M_INVALID_PARAM"
    response = await request_token(identity, "hostile@example.net", next_link="https://notexample.org/")
    assert response.status_code == 400


async def test_allowed_next_link(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    runtime.validation.next_link_domains = ["example.org"]
    response = await request_token(identity, "ok@example.net", next_link="https://app.example.org/x")
    assert response.status_code == 200, response.text
    await mail_number(internet, 1)


async def test_same_session_and_send_attempt(identity: httpx.AsyncClient, internet: SmtpSink) -> None:
    first = await request_token(identity, "again@example.net", send_attempt=1)
    mail = await mail_number(internet, 1)
    # The same attempt, or no attempt: the same sid, no new mail.
    for extra in ({"send_attempt": 1}, {}, {"send_attempt": 0}):
        again = await request_token(identity, "Again@example.net", **extra)
        assert again.json()["sid"] == first.json()["sid"]
    # A higher attempt: the same sid, the same token mailed again.
    again = await request_token(identity, "again@example.net", send_attempt=2)
    assert again.json()["sid"] == first.json()["sid"]
    second = await mail_number(internet, 2)
    assert second.token == mail.token
    await asyncio.sleep(0.3)  # nothing else arrives
    assert len(internet.received) == 2
    # Another client secret: another session.
    other = await identity.post(
        f"{V1}/validate/email/requestToken",
        json={"client_secret": "x", "email": "again@example.net"},
    )
    assert other.json()["sid"] != first.json()["sid"]
    assert (await mail_number(internet, 3)).token != mail.token


async def test_wrong_secrets_tokens_and_sids(identity: httpx.AsyncClient, internet: SmtpSink) -> None:
    sid = (await request_token(identity, "wrong@example.net")).json()["sid"]
    mail = await mail_number(internet, 1)
    submit = f"{V1}/validate/email/submitToken"
    cases = [
        (
            {"sid": sid, "client_secret": "not_it", "token": mail.token},
            "M_INVALID_PARAM",
        ),
        (
            {
                "sid": sid,
                "client_secret": SECRET,
                "token": mail.token[:-1] + ("a" if mail.token[-1] != "a" else "b"),
            },
            "M_TOKEN_INCORRECT",
        ),
        (
            {"sid": "999999", "client_secret": SECRET, "token": mail.token},
            "M_NO_VALID_SESSION",
        ),
        (
            {"sid": "abc", "client_secret": SECRET, "token": mail.token},
            "M_INVALID_PARAM",
        ),
        (
            {"sid": sid, "client_secret": "bad secret!", "token": mail.token},
            "M_INVALID_PARAM",
        ),
        ({"sid": sid, "client_secret": SECRET}, "M_MISSING_PARAMS"),
    ]
    for body, errcode in cases:
        response = await identity.post(submit, json=body)
        assert response.status_code == 400, body
        assert response.json()["errcode"] == errcode, (body, response.json())
        assert isinstance(response.json()["error"], str)
    response = await identity.get(f"{V1}/3pid/getValidated3pid", params={"sid": sid, "client_secret": "not_it"})
    assert response.status_code == 400 and response.json()["errcode"] == "M_NO_VALID_SESSION"
    response = await identity.get(f"{V1}/3pid/getValidated3pid", params={"sid": sid})
    assert response.status_code == 400 and response.json()["errcode"] == "M_MISSING_PARAMS"


async def test_invalid_requests(identity: httpx.AsyncClient) -> None:
    url = f"{V1}/validate/email/requestToken"
    for body, errcode in [
        ({"client_secret": SECRET, "email": "not an address"}, "M_INVALID_EMAIL"),
        ({"client_secret": SECRET, "email": "a@b@c"}, "M_INVALID_EMAIL"),
        ({"client_secret": SECRET, "email": "x@-bad-.example"}, "M_INVALID_EMAIL"),
        ({"client_secret": "a" * 256, "email": "x@example.net"}, "M_INVALID_PARAM"),
        ({"client_secret": "spaces here", "email": "x@example.net"}, "M_INVALID_PARAM"),
        (
            {"client_secret": SECRET, "email": "x@example.net", "send_attempt": "many"},
            "M_INVALID_PARAM",
        ),
        (
            {"client_secret": SECRET, "email": "x@example.net", "send_attempt": -1},
            "M_INVALID_PARAM",
        ),
        ({"client_secret": SECRET}, "M_MISSING_PARAMS"),
        ({"email": "x@example.net"}, "M_MISSING_PARAMS"),
    ]:
        response = await identity.post(url, json=body)
        assert response.status_code == 400, body
        assert response.json()["errcode"] == errcode, (body, response.json())
    response = await identity.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["errcode"] == "M_NOT_JSON"
    response = await identity.post(url, json=["a list"])
    assert response.status_code == 400 and response.json()["errcode"] == "M_BAD_JSON"


async def test_internationalised_addresses(identity: httpx.AsyncClient, runtime: Runtime, internet: SmtpSink) -> None:
    internet.serve_domain("xn--bcher-kva.example")
    response = await request_token(identity, "Jöran@Bücher.example")
    assert response.status_code == 200, response.text
    sid = response.json()["sid"]
    mail = await mail_number(internet, 1)
    assert mail.to == ["jöran@xn--bcher-kva.example"]
    response = await identity.post(
        f"{V1}/validate/email/submitToken",
        json={"sid": sid, "client_secret": SECRET, "token": mail.token},
    )
    assert response.status_code == 200
    response = await identity.get(f"{V1}/3pid/getValidated3pid", params={"sid": sid, "client_secret": SECRET})
    assert response.json()["address"] == "jöran@bücher.example"
    # The other spelling of the domain is the same session.
    again = await request_token(identity, "jöran@xn--bcher-kva.example")
    assert again.json()["sid"] == sid
