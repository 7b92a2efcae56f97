"""The server key: one secret from which postern derives what protects stored secrets.

- ``encrypt``/``decrypt``: AES-256-GCM for secrets postern must read back (TOTP seeds).
- ``digest``: a keyed SHA-256 (HMAC) of secrets postern only compares (API keys, mailed
  codes, application passwords). Keyed, so that a stolen database does not let anyone
  brute-force a 6-digit code offline.
- ``sign``/``unsign``: short-lived signed values handed to a client and given back
  (the user API's ``mfa_key``).

Each use gets its own subkey (HKDF with a purpose label), so that no value made for
one purpose is accepted for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from postern.config import Settings

KEY_FILE = "server.key"
MIN_KEY_BYTES = 32


class InvalidSignature(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServerKey:
    def __init__(self, secret: bytes):
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError(f"the server key must be at least {MIN_KEY_BYTES} bytes")
        self._secret = secret
        self._subkeys: dict[str, bytes] = {}
        self._aead = AESGCM(self._subkey("encrypt"))

    @classmethod
    def load(cls, settings: Settings) -> ServerKey:
        """The configured key, or the one in ``data_dir/server.key`` (made at first use)."""
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value().encode("utf-8"))
        path = Path(settings.data_dir) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once agree on one key (the loser reads it).
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as file:
                    file.write(_b64(secrets.token_bytes(32)) + "\n")
                    file.flush()
                    os.fsync(file.fileno())
        text = path.read_text().strip()
        return cls(text.encode("ascii"))

    def _subkey(self, purpose: str) -> bytes:
        key = self._subkeys.get(purpose)
        if key is None:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"postern " + purpose.encode()).derive(self._secret)
            self._subkeys[purpose] = key
        return key

    # Secrets read back ----------------------------------------------------------------

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """``context`` (e.g. the user id) is bound to the ciphertext: a value copied to
        another row does not decrypt there."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return "v1." + _b64(nonce + sealed)

    def decrypt(self, token: str, *, context: str) -> str:
        if not token.startswith("v1."):
            raise InvalidSignature("unknown ciphertext format")
        raw = _unb64(token[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except (InvalidTag, ValueError) as error:
            raise InvalidSignature("ciphertext does not decrypt with this server key") from error

    # Secrets only compared --------------------------------------------------------------

    def digest(self, value: str, *, purpose: str) -> str:
        """Hex HMAC-SHA256 of ``value``; compare digests with ``hmac.compare_digest``."""
        return hmac.new(self._subkey("digest " + purpose), value.encode("utf-8"), hashlib.sha256).hexdigest()

    # Short-lived signed values ------------------------------------------------------------

    def sign(self, payload: str, *, purpose: str, ttl_s: int) -> str:
        expires = int(time.time()) + ttl_s
        body = f"{_b64(payload.encode('utf-8'))}.{expires}"
        mac = hmac.new(self._subkey("sign " + purpose), body.encode("ascii"), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def unsign(self, token: str, *, purpose: str) -> str:
        """The payload of a value made by ``sign`` for this purpose and not expired."""
        try:
            encoded, expires, mac = token.split(".")
            body = f"{encoded}.{expires}"
            expected = hmac.new(self._subkey("sign " + purpose), body.encode("ascii"), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise InvalidSignature("bad signature")
            if int(expires) < time.time():
                raise InvalidSignature("expired")
            return _unb64(encoded).decode("utf-8")
        except (ValueError, UnicodeError) as error:
            raise InvalidSignature("malformed signed value") from error
