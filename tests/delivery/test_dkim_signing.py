from __future__ import annotations

import base64
import importlib.util
import re
import time
import types
from collections.abc import Callable

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.util import parse_tag_value
from hypothesis import given, settings
from hypothesis import strategies as st

from postern.delivery.dkim_signing import (
    DkimKey,
    DkimSigningError,
    dns_record_name,
    dns_record_value,
    generate_key,
    sign,
)
from postern.errors import InvalidInput

MESSAGE = (
    b"Received: from client.example.org by mail.example.com; Tue, 1 Jul 2025 10:00:00 +0000\r\n"
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: Lunch tomorrow?\r\n"
    b"Date: Tue, 1 Jul 2025 10:00:00 +0000\r\n"
    b"Message-ID: <20250701100000.1234@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"\r\n"
    b"are you free for lunch tomorrow?\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return generate_key("example.com", "sel1")


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return generate_key("example.com", "sel2", algorithm="ed25519-sha256")


def dns_for(*keys: DkimKey) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` answering the TXT records of ``keys`` (names as dkimpy
    asks them: bytes with the trailing dot)."""
    table = {(dns_record_name(k) + ".").encode("ascii"): dns_record_value(k).encode("ascii") for k in keys}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return table.get(name.lower())

    return dnsfunc


# PyNaCl is not a postern dependency, and dkimpy verifies ed25519 only through it.  The
# tests give dkimpy a stand-in made of cryptography's Ed25519, so that dkimpy's own
# verification code checks our ed25519 signatures; with PyNaCl installed, it is used.
class _NaclValueError(ValueError):
    pass


class _BadSignatureError(Exception):
    pass


class _VerifyKey:
    def __init__(self, key: bytes, encoder: object = None) -> None:
        try:
            self._key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(key))
        except ValueError as exc:
            raise _NaclValueError(str(exc)) from None

    def verify(self, smessage: bytes, signature: bytes) -> bytes:
        try:
            self._key.verify(signature, smessage)
        except InvalidSignature:
            raise _BadSignatureError("bad signature") from None
        return smessage


class _SigningKey:
    def __init__(self, seed: bytes, encoder: object = None) -> None:
        try:
            self._key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
        except ValueError as exc:
            raise _NaclValueError(str(exc)) from None

    def sign(self, message: bytes) -> types.SimpleNamespace:
        return types.SimpleNamespace(signature=self._key.sign(message))


NACL_STANDIN = types.SimpleNamespace(
    signing=types.SimpleNamespace(VerifyKey=_VerifyKey, SigningKey=_SigningKey),
    encoding=types.SimpleNamespace(Base64Encoder=object()),
    exceptions=types.SimpleNamespace(ValueError=_NaclValueError, BadSignatureError=_BadSignatureError),
)


@pytest.fixture
def nacl_for_dkimpy(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("nacl") is None:
        monkeypatch.setattr(dkim, "nacl", NACL_STANDIN, raising=False)


def tags(signature_line: bytes) -> dict[bytes, bytes]:
    value = signature_line.split(b":", 1)[1]
    return parse_tag_value(value)


def signed_headers(signature_line: bytes) -> list[bytes]:
    return [h.strip() for h in re.sub(rb"\s+", b"", tags(signature_line)[b"h"]).split(b":")]


# --- keys and records ------------------------------------------------------------


def test_generate_rsa_key_defaults() -> None:
    key = generate_key("Example.COM.")
    assert key.algorithm == "rsa-sha256"
    assert key.domain == "example.com"
    assert re.fullmatch(r"postern\d{6}", key.selector)
    assert key.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    private = serialization.load_pem_private_key(key.private_key_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048


def test_repr_does_not_show_the_private_key(rsa_key: DkimKey) -> None:
    assert b"PRIVATE" not in repr(rsa_key).encode()
    assert "sel1" in repr(rsa_key)


def test_record_name_and_rsa_value(rsa_key: DkimKey) -> None:
    assert dns_record_name(rsa_key) == "sel1._domainkey.example.com"
    value = dns_record_value(rsa_key)
    match = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)", value)
    assert match
    public = serialization.load_der_public_key(base64.b64decode(match.group(1)))
    private = serialization.load_pem_private_key(rsa_key.private_key_pem, password=None)
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


def test_ed25519_value_is_the_raw_public_key(ed_key: DkimKey) -> None:
    assert ed_key.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    value = dns_record_value(ed_key)
    match = re.fullmatch(r"v=DKIM1; k=ed25519; p=([A-Za-z0-9+/=]+)", value)
    assert match
    raw = base64.b64decode(match.group(1))
    assert len(raw) == 32
    private = serialization.load_pem_private_key(ed_key.private_key_pem, password=None)
    assert private.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == raw


def test_generate_key_refuses_bad_input() -> None:
    with pytest.raises(InvalidInput):
        generate_key("example.com", algorithm="rsa-sha1")
    with pytest.raises(InvalidInput):
        generate_key("example.com", selector="bad selector")
    with pytest.raises(InvalidInput):
        generate_key("exa mple.com")
    with pytest.raises(InvalidInput):
        generate_key("")


# --- signing and verifying -------------------------------------------------------


def test_rsa_signature_verifies(rsa_key: DkimKey) -> None:
    line = sign(MESSAGE, rsa_key)
    assert line.startswith(b"DKIM-Signature: ") and line.endswith(b"\r\n")
    assert all(len(physical) <= 78 for physical in line.split(b"\r\n"))
    fields = tags(line)
    assert fields[b"a"] == b"rsa-sha256"
    assert fields[b"c"] == b"relaxed/relaxed"
    assert fields[b"d"] == b"example.com"
    assert fields[b"s"] == b"sel1"
    assert dkim.verify(line + MESSAGE, dnsfunc=dns_for(rsa_key))


def test_ed25519_signature_verifies(ed_key: DkimKey, nacl_for_dkimpy: None) -> None:
    line = sign(MESSAGE, ed_key)
    assert tags(line)[b"a"] == b"ed25519-sha256"
    assert dkim.verify(line + MESSAGE, dnsfunc=dns_for(ed_key))
    assert not dkim.verify(line + MESSAGE.replace(b"lunch", b"dinner"), dnsfunc=dns_for(ed_key))


def test_ed25519_signature_is_what_dkimpy_itself_makes(
    ed_key: DkimKey, nacl_for_dkimpy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1751364000.0)
    private = serialization.load_pem_private_key(ed_key.private_key_pem, password=None)
    seed = private.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ours = sign(MESSAGE, ed_key)
    include = signed_headers(ours)
    theirs = dkim.sign(
        MESSAGE,
        b"sel2",
        b"example.com",
        base64.b64encode(seed),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
        signature_algorithm=b"ed25519-sha256",
    )
    assert ours == theirs


def test_both_signatures_on_one_message(rsa_key: DkimKey, ed_key: DkimKey, nacl_for_dkimpy: None) -> None:
    signed = sign(MESSAGE, rsa_key) + MESSAGE
    signed = sign(signed, ed_key) + signed
    dnsfunc = dns_for(rsa_key, ed_key)
    assert dkim.DKIM(signed).verify(idx=0, dnsfunc=dnsfunc)
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=dnsfunc)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"lunch tomorrow?", b"lunch today?"),
        lambda m: m + b"P.S. one more line\r\n",
        lambda m: m.replace(b"Subject: Lunch tomorrow?", b"Subject: Dinner tomorrow?"),
        lambda m: m.replace(b"To: Bob <bob@example.net>", b"To: Eve <eve@example.net>"),
        lambda m: b"From: Mallory <mallory@example.com>\r\n" + m,  # a second From (oversigned)
        lambda m: b"Reply-To: mallory@example.org\r\n" + m,  # an added Reply-To (oversigned)
        lambda m: b"List-Unsubscribe: <https://evil.example/>\r\n" + m,
    ],
)
def test_tampering_breaks_the_signature(rsa_key: DkimKey, tamper: Callable[[bytes], bytes]) -> None:
    line = sign(MESSAGE, rsa_key)
    assert dkim.verify(line + MESSAGE, dnsfunc=dns_for(rsa_key))
    assert not dkim.verify(line + tamper(MESSAGE), dnsfunc=dns_for(rsa_key))


def test_relaxed_canonicalisation_survives_refolding_and_added_trace_fields(rsa_key: DkimKey) -> None:
    line = sign(MESSAGE, rsa_key)
    changed = MESSAGE.replace(b"Subject: Lunch tomorrow?", b"Subject:   Lunch\r\n   tomorrow?   ")
    changed = changed.replace(b"are you free", b"are  you free")
    changed = b"Received: from mail.example.com by mx.example.net; Tue, 1 Jul 2025 10:00:01 +0000\r\n" + changed
    assert dkim.verify(line + changed, dnsfunc=dns_for(rsa_key))


def test_lf_only_message_signs_as_its_crlf_form(rsa_key: DkimKey) -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    line = sign(lf, rsa_key)
    assert dkim.verify(line + MESSAGE, dnsfunc=dns_for(rsa_key))


def test_default_header_list(rsa_key: DkimKey) -> None:
    names = signed_headers(sign(MESSAGE, rsa_key))
    assert names.count(b"from") == 2  # signed once, oversigned once
    assert names.count(b"subject") == 2 and names.count(b"to") == 2
    assert b"reply-to" in names and b"list-unsubscribe" in names  # absent: oversigned against addition
    assert b"received" not in names and b"x-mailer" not in names
    assert names[0] == b"from"  # present fields first, in message order


def test_explicit_header_list(rsa_key: DkimKey) -> None:
    line = sign(MESSAGE, rsa_key, headers=[b"From", b"subject", b"from"])
    assert signed_headers(line) == [b"from", b"subject", b"from"]
    assert dkim.verify(line + MESSAGE, dnsfunc=dns_for(rsa_key))
    changed = MESSAGE.replace(b"To: Bob <bob@example.net>", b"To: Eve <eve@example.net>")
    assert dkim.verify(line + changed, dnsfunc=dns_for(rsa_key))  # To was not signed


def test_idn_domain_is_signed_with_its_a_label() -> None:
    key = generate_key("bücher.example", "s1", algorithm="rsa-sha256")
    assert key.domain == "xn--bcher-kva.example"
    assert dns_record_name(key) == "s1._domainkey.xn--bcher-kva.example"
    # A key made elsewhere with the Unicode form signs and publishes the A-label too.
    unicode_key = DkimKey("Bücher.Example", "s1", key.private_key_pem, "rsa-sha256")
    assert dns_record_name(unicode_key) == "s1._domainkey.xn--bcher-kva.example"
    message = MESSAGE.replace(b"alice@example.com", "alice@bücher.example".encode())
    line = sign(message, unicode_key)
    fields = tags(line)
    assert fields[b"d"] == b"xn--bcher-kva.example"
    assert fields[b"i"] == b"@xn--bcher-kva.example"
    line.decode("ascii")
    assert dkim.verify(line + message, dnsfunc=dns_for(key))


def test_utf8_headers_sign_and_verify(rsa_key: DkimKey) -> None:
    message = MESSAGE.replace(b"Subject: Lunch tomorrow?", "Subject: Déjeuner demain ? 🍽".encode())
    line = sign(message, rsa_key)
    assert dkim.verify(line + message, dnsfunc=dns_for(rsa_key))


def test_crlf_private_key_pem_is_accepted(rsa_key: DkimKey) -> None:
    key = DkimKey("example.com", "sel1", rsa_key.private_key_pem.replace(b"\n", b"\r\n"), "rsa-sha256")
    assert dkim.verify(sign(MESSAGE, key) + MESSAGE, dnsfunc=dns_for(rsa_key))


def test_pkcs1_rsa_key_is_accepted(rsa_key: DkimKey) -> None:
    private = serialization.load_pem_private_key(rsa_key.private_key_pem, password=None)
    pkcs1 = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    key = DkimKey("example.com", "sel1", pkcs1, "rsa-sha256")
    assert dkim.verify(sign(MESSAGE, key) + MESSAGE, dnsfunc=dns_for(rsa_key))


# --- hostile input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\nno header at all",
        b"this line is not a header\r\nFrom: a@example.com\r\n\r\nbody",
        b" continuation first\r\nFrom: a@example.com\r\n\r\nbody",
        b"Subject: no from\r\n\r\nbody",
        b"\x00\x01\x02\xff",
        b"From\x00: a@example.com\r\n\r\n",
        "From: a@example.com\r\n\r\nstr, not bytes",
        None,
        12345,
    ],
)
def test_hostile_messages_raise_only_dkim_signing_error(rsa_key: DkimKey, raw: object) -> None:
    with pytest.raises(DkimSigningError):
        sign(raw, rsa_key)  # type: ignore[arg-type]


def test_bytearray_message_is_fine(rsa_key: DkimKey) -> None:
    line = sign(bytearray(MESSAGE), rsa_key)
    assert dkim.verify(line + MESSAGE, dnsfunc=dns_for(rsa_key))


@pytest.mark.parametrize(
    "headers",
    [
        [b"subject", b"to"],  # no From
        [b"from", b"received"],  # must not be signed
        [b"from", b"bad name"],
        [b"from", b""],
        [b"from", 10**12],  # not bytes: refused, not allocated
        [b"from", None],
        b"from",
    ],
)
def test_bad_header_lists_raise_dkim_signing_error(rsa_key: DkimKey, headers: object) -> None:
    with pytest.raises(DkimSigningError):
        sign(MESSAGE, rsa_key, headers=headers)  # type: ignore[arg-type]


def test_unusable_keys_raise_dkim_signing_error(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    bad_keys = [
        DkimKey("example.com", "sel1", b"not a pem", "rsa-sha256"),
        DkimKey("example.com", "sel1", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "rsa-sha256"),
        DkimKey("example.com", "sel1", ed_key.private_key_pem, "rsa-sha256"),  # wrong type
        DkimKey("example.com", "sel1", rsa_key.private_key_pem, "ed25519-sha256"),
        DkimKey("example.com", "sel1", rsa_key.private_key_pem, "rsa-sha1"),
        DkimKey("example.com", "bad selector", rsa_key.private_key_pem, "rsa-sha256"),
        DkimKey("example.com", "", rsa_key.private_key_pem, "rsa-sha256"),
        DkimKey("exa mple.com", "sel1", rsa_key.private_key_pem, "rsa-sha256"),
        DkimKey("", "sel1", rsa_key.private_key_pem, "rsa-sha256"),
        DkimKey("example.com", "sel1", None, "rsa-sha256"),  # type: ignore[arg-type]
    ]
    for key in bad_keys:
        with pytest.raises(DkimSigningError):
            sign(MESSAGE, key)
    with pytest.raises(DkimSigningError):
        sign(MESSAGE, "not a key")  # type: ignore[arg-type]
    with pytest.raises(DkimSigningError):
        dns_record_value(bad_keys[0])
    with pytest.raises(DkimSigningError):
        dns_record_name(bad_keys[5])


def test_error_text_does_not_quote_the_message(rsa_key: DkimKey) -> None:
    secret = b"this secret header line has no colon"
    with pytest.raises(DkimSigningError) as info:
        sign(secret + b"\r\nFrom: a@example.com\r\n\r\n", rsa_key)
    assert "secret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.lists(
            st.sampled_from(
                [b"From: a@example.com", b"To: b@example.net", b"Subject: x", b"", b" folded", b"\t",
                 b"X: \x00\xff", b"\r", b"no colon", b"From:", b":", b"Content-Type: text/plain", b"\xc3\xa9: v"]
            ),
            max_size=12,
        ).map(lambda lines: b"\r\n".join(lines)),
    )
)
def test_fuzz_sign_returns_a_header_or_raises_dkim_signing_error(raw: bytes) -> None:
    key = _FUZZ_KEY
    try:
        line = sign(raw, key)
    except DkimSigningError:
        return
    assert line.startswith(b"DKIM-Signature: ") and line.endswith(b"\r\n")


_FUZZ_KEY = generate_key("example.com", "fuzz", algorithm="ed25519-sha256")
