"""DKIM keys and signatures for outgoing mail (RFC 6376, RFC 8463).

Pure functions: no DNS, no database, no logging.  :func:`generate_key` makes a key,
:func:`dns_record_name` and :func:`dns_record_value` say what to publish, and
:func:`sign` returns the ``DKIM-Signature`` header line to prepend to a message.

Signatures are made by dkimpy with relaxed/relaxed canonicalisation.  dkimpy reaches
ed25519 only through PyNaCl, which postern does not depend on, so ed25519 signatures
are made by the same dkimpy code (header selection, canonicalisation, hashing and
folding) with the key operation done by ``cryptography``; Ed25519 is deterministic,
so the result is the one PyNaCl would give.

Keys are kept as PEM (PKCS#8 for generated keys; any unencrypted PEM private key
that ``cryptography`` reads is accepted).  Domains are signed and published in
their A-label (punycode) form.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import HASH_ALGORITHMS

from postern.accounts.addressing import normalise_domain
from postern.errors import DomainError, InvalidInput

__all__ = [
    "ALGORITHMS",
    "DEFAULT_SIGNED_HEADERS",
    "OVERSIGNED_HEADERS",
    "DkimKey",
    "DkimSigningError",
    "dns_record_name",
    "dns_record_value",
    "generate_key",
    "sign",
]

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
RSA_KEY_BITS = 2048
# Smaller RSA keys are refused: verifiers (dkimpy included) treat them as no signature.
MIN_RSA_KEY_BITS = 1024

# Header fields signed when present (each instance), in the order they appear in
# the message.  RFC 6376 5.4.1's list, plus RFC 8058's List-Unsubscribe-Post.
DEFAULT_SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"sender",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"to",
    b"cc",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"content-id",
    b"content-description",
    b"content-language",
    b"resent-date",
    b"resent-from",
    b"resent-sender",
    b"resent-to",
    b"resent-cc",
    b"resent-message-id",
    b"list-id",
    b"list-help",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-subscribe",
    b"list-post",
    b"list-owner",
    b"list-archive",
    b"autocrypt",
    b"openpgp",
)
# Header fields signed once more than they occur (also when absent), so that an
# instance added later (a second From, a Reply-To or an unsubscribe link slipped
# into a replayed message) breaks the signature.  Relays do not add these.
OVERSIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"sender",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"to",
    b"cc",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
# RFC 6376 5.4: never signed (dkimpy refuses them too).
_NEVER_SIGNED = frozenset({b"return-path", b"received", b"comments", b"keywords", b"bcc", b"resent-bcc", b"dkim-signature"})
_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 ftext
_SELECTOR_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_CANONICALIZE = (b"relaxed", b"relaxed")


class DkimSigningError(Exception):
    """The message cannot be signed with this key (a broken message, an unusable key
    or a bad header list).  The message may still be sent unsigned."""


@dataclass(frozen=True)
class DkimKey:
    domain: str  # A-label form when made by generate_key
    selector: str
    private_key_pem: bytes
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"

    def __repr__(self) -> str:  # never show the private key
        return f"DkimKey(domain={self.domain!r}, selector={self.selector!r}, algorithm={self.algorithm!r})"


def generate_key(domain: str, selector: str | None = None, algorithm: str = "rsa-sha256") -> DkimKey:
    """A new key for ``domain``: 2048-bit RSA or Ed25519.  The selector defaults to
    ``postern`` + the current UTC year and month (``postern202507``), so that a key
    made next month can be published beside this one before switching.

    Raises :class:`~postern.errors.InvalidInput` for a bad domain, selector or algorithm.
    """
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"algorithm must be one of {', '.join(ALGORITHMS)}", field="algorithm")
    ascii_domain, _ = normalise_domain(domain)
    if selector is None:
        selector = "postern" + datetime.now(UTC).strftime("%Y%m")
    try:
        selector = _check_selector(selector)
    except DkimSigningError as exc:
        raise InvalidInput(str(exc), field="selector") from None
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa-sha256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return DkimKey(domain=ascii_domain, selector=selector, private_key_pem=pem, algorithm=algorithm)


def dns_record_name(key: DkimKey) -> str:
    """``<selector>._domainkey.<domain>`` (A-labels), where the TXT record goes."""
    return f"{_check_selector(key.selector)}._domainkey.{_ascii_domain(key.domain)}"


def dns_record_value(key: DkimKey) -> str:
    """The TXT record's text: ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>`` or,
    for Ed25519 (RFC 8463), ``v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte key>``.

    An RSA value is longer than 255 characters: zone files and DNS panels need it
    split into several quoted strings of one TXT record, which DNS joins back.
    """
    private = _load_private_key(key)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kind = "ed25519"
    else:
        public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        kind = "rsa"
    return f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"


def sign(raw: bytes, key: DkimKey, *, headers: Sequence[bytes] | None = None) -> bytes:
    """The ``DKIM-Signature:`` header line (folded, CRLF-terminated) to prepend to ``raw``.

    ``headers`` overrides the signed header list (lowercase or not; repeat a name to
    sign more instances or to oversign).  By default every present field of
    :data:`DEFAULT_SIGNED_HEADERS` is signed and those of :data:`OVERSIGNED_HEADERS`
    once more.  Raises :class:`DkimSigningError`, and nothing else, for any input.
    """
    try:
        return _sign(raw, key, headers)
    except DkimSigningError:
        raise
    except Exception as exc:  # dkimpy raises many kinds on hostile input; callers get one
        # Not chained: dkimpy's own messages may quote the message's header lines.
        raise DkimSigningError(f"cannot sign the message: {type(exc).__name__}: {_short(exc)}") from None


# --- internals -------------------------------------------------------------------


def _sign(raw: Any, key: Any, headers: Sequence[bytes] | None) -> bytes:
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise DkimSigningError("the message must be bytes")
    if not isinstance(key, DkimKey):
        raise DkimSigningError("the key must be a DkimKey")
    if key.algorithm not in ALGORITHMS:
        raise DkimSigningError(f"unsupported DKIM algorithm {key.algorithm!r}")
    selector = _check_selector(key.selector).encode("ascii")
    domain = _ascii_domain(key.domain).encode("ascii")
    private = _load_private_key(key)

    signer = dkim.DKIM(raw, signature_algorithm=key.algorithm.encode("ascii"), linesep=b"\r\n")
    present = [bytes(name).lower() for name, _ in signer.headers]
    if b"from" not in present:
        raise DkimSigningError("the message has no From header field")
    include = _default_headers(present) if headers is None else _checked_headers(headers)

    if isinstance(private, rsa.RSAPrivateKey):
        # dkimpy does RSA itself; it reads PKCS#1 PEM with LF line ends.
        pkcs1 = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        result = signer.sign(selector, domain, pkcs1, canonicalize=_CANONICALIZE, include_headers=list(include))
    else:
        result = _sign_ed25519(signer, selector, domain, private, include)
    if not result.startswith(b"DKIM-Signature: ") or not result.endswith(b"\r\n"):
        raise DkimSigningError("dkimpy produced an unexpected signature line")
    return result


def _default_headers(present: list[bytes]) -> tuple[bytes, ...]:
    signed = set(DEFAULT_SIGNED_HEADERS)
    return tuple(name for name in present if name in signed) + OVERSIGNED_HEADERS


def _checked_headers(headers: Sequence[bytes]) -> tuple[bytes, ...]:
    if isinstance(headers, (bytes, str)):
        raise DkimSigningError("headers must be a sequence of header field names")
    names: list[bytes] = []
    for item in headers:
        if isinstance(item, str):
            name = item.encode("ascii", errors="replace")
        elif isinstance(item, (bytes, bytearray)):
            name = bytes(item)
        else:
            raise DkimSigningError("header field names must be bytes")
        name = name.strip().lower()
        if not _FIELD_NAME.match(name):
            raise DkimSigningError(f"invalid header field name {name[:40]!r}")
        if name in _NEVER_SIGNED:
            raise DkimSigningError(f"the {name.decode('ascii')} header field must not be signed")
        names.append(name)
    if b"from" not in names:
        raise DkimSigningError("the From header field must be signed")
    return tuple(names)


def _sign_ed25519(
    signer: dkim.DKIM,
    selector: bytes,
    domain: bytes,
    private: ed25519.Ed25519PrivateKey,
    include_headers: tuple[bytes, ...],
) -> bytes:
    """dkimpy's ``DKIM.sign`` (1.1.8) for ed25519-sha256, with a cryptography key in
    place of PyNaCl's.  Everything but the key operation is dkimpy's own code."""
    canon_policy = CanonicalizationPolicy.from_c_value(b"/".join(_CANONICALIZE))
    signer.include_headers = include_headers
    body = canon_policy.canonicalize_body(signer.body)
    signer.hasher = HASH_ALGORITHMS[b"ed25519-sha256"]
    bodyhash = base64.b64encode(signer.hasher(body).digest())
    sigfields = [
        (b"v", b"1"),
        (b"a", b"ed25519-sha256"),
        (b"c", canon_policy.to_c_value()),
        (b"d", domain),
        (b"i", b"@" + domain),
        (b"q", b"dns/txt"),
        (b"s", selector),
        (b"t", str(int(time.time())).encode("ascii")),
        (b"h", b" : ".join(include_headers)),
        (b"bh", bodyhash),
        (b"b", b"0" * 60),  # as dkimpy: b= folds onto its own line
    ]
    res = signer.gen_header(sigfields, include_headers, canon_policy, b"DKIM-Signature", _Ed25519Signer(private))
    signer.domain = domain
    signer.selector = selector
    signer.signature_fields = dict(sigfields)
    return b"DKIM-Signature: " + res


@dataclass(frozen=True)
class _Signature:
    signature: bytes


class _Ed25519Signer:
    """What dkimpy's ``gen_header`` asks of an ed25519 key: ``sign(data).signature``
    (RFC 8463: Ed25519 over the SHA-256 digest of the signed data)."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self._private = private

    def sign(self, data: bytes) -> _Signature:
        return _Signature(self._private.sign(data))


def _load_private_key(key: DkimKey) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    pem = key.private_key_pem
    if isinstance(pem, str):
        pem = pem.encode("ascii", errors="replace")
    if not isinstance(pem, (bytes, bytearray, memoryview)):
        raise DkimSigningError("the DKIM private key must be PEM bytes")
    try:
        private = serialization.load_pem_private_key(bytes(pem), password=None)
    except (ValueError, TypeError) as exc:
        raise DkimSigningError(f"unusable DKIM private key: {_short(exc)}") from None
    except UnsupportedAlgorithm:
        raise DkimSigningError("unusable DKIM private key: unsupported key type") from None
    if key.algorithm == "ed25519-sha256" and not isinstance(private, ed25519.Ed25519PrivateKey):
        raise DkimSigningError("the key is not an Ed25519 key, but the algorithm is ed25519-sha256")
    if key.algorithm == "rsa-sha256" and not isinstance(private, rsa.RSAPrivateKey):
        raise DkimSigningError("the key is not an RSA key, but the algorithm is rsa-sha256")
    if key.algorithm not in ALGORITHMS:
        raise DkimSigningError(f"unsupported DKIM algorithm {key.algorithm!r}")
    if isinstance(private, rsa.RSAPrivateKey) and private.key_size < MIN_RSA_KEY_BITS:
        raise DkimSigningError(f"the RSA key has {private.key_size} bits; at least {MIN_RSA_KEY_BITS} are needed")
    if not isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimSigningError("unusable DKIM private key: unsupported key type")
    return private


def _ascii_domain(domain: Any) -> str:
    if not isinstance(domain, str):
        raise DkimSigningError("the signing domain must be a string")
    try:
        return normalise_domain(domain)[0]
    except DomainError:
        raise DkimSigningError(f"invalid signing domain {domain[:100]!r}") from None


def _check_selector(selector: Any) -> str:
    """A selector is one or more DNS labels (RFC 6376 3.1), compared without case."""
    if not isinstance(selector, str):
        raise DkimSigningError("the selector must be a string")
    value = selector.strip().lower()
    labels = value.split(".")
    if not value or len(value) > 200 or not all(_SELECTOR_LABEL.match(label) for label in labels):
        raise DkimSigningError(f"invalid DKIM selector {selector[:70]!r}: use letters, digits and hyphens, in dot-separated labels")
    return value


def _short(exc: BaseException) -> str:
    """An exception's text, short and on one line; dkimpy quotes header bytes in
    some messages, which callers must not log."""
    text = " ".join(str(exc).split())
    if isinstance(exc, dkim.MessageFormatError):
        return "malformed header section"
    return text[:120]
