"""The server key: encryption bound to a context, keyed digests, signed values, and
where the key comes from."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from postern.accounts.server_key import KEY_FILE, InvalidSignature, ServerKey
from postern.config import Settings

SECRET = b"k" * 32


@pytest.fixture
def key() -> ServerKey:
    return ServerKey(SECRET)


def test_encrypt_round_trip(key: ServerKey) -> None:
    sealed = key.encrypt("JBSWY3DPEHPK3PXP", context="totp:u1")
    assert sealed.startswith("v1.") and "JBSWY3DPEHPK3PXP" not in sealed
    assert key.decrypt(sealed, context="totp:u1") == "JBSWY3DPEHPK3PXP"
    # A fresh nonce every time.
    assert key.encrypt("JBSWY3DPEHPK3PXP", context="totp:u1") != sealed
    assert key.decrypt(key.encrypt("ünïcødé ☃", context="c"), context="c") == "ünïcødé ☃"


def test_ciphertext_is_bound_to_its_context(key: ServerKey) -> None:
    sealed = key.encrypt("secret", context="totp:u1")
    with pytest.raises(InvalidSignature):
        key.decrypt(sealed, context="totp:u2")


@pytest.mark.parametrize("mangle", [lambda s: s[:-2] + ("AA" if s[-2:] != "AA" else "BB"), lambda s: "v2" + s[2:], lambda s: s[:10], lambda s: "v1."])
def test_tampered_ciphertext_is_refused(key: ServerKey, mangle: object) -> None:
    sealed = key.encrypt("secret", context="c")
    with pytest.raises(InvalidSignature):
        key.decrypt(mangle(sealed), context="c")  # type: ignore[operator]


def test_another_key_cannot_decrypt(key: ServerKey) -> None:
    with pytest.raises(InvalidSignature):
        ServerKey(b"x" * 32).decrypt(key.encrypt("secret", context="c"), context="c")


def test_digest(key: ServerKey) -> None:
    digest = key.digest("abcdefghijklmnop", purpose="asp")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert key.digest("abcdefghijklmnop", purpose="asp") == digest
    # Another purpose, another value or another key: another digest.
    assert key.digest("abcdefghijklmnop", purpose="api key") != digest
    assert key.digest("abcdefghijklmnoq", purpose="asp") != digest
    assert ServerKey(b"x" * 32).digest("abcdefghijklmnop", purpose="asp") != digest


def test_sign_and_unsign(key: ServerKey) -> None:
    token = key.sign("user-1", purpose="mfa", ttl_s=60)
    assert key.unsign(token, purpose="mfa") == "user-1"
    with pytest.raises(InvalidSignature):
        key.unsign(token, purpose="other")
    with pytest.raises(InvalidSignature):
        ServerKey(b"x" * 32).unsign(token, purpose="mfa")
    encoded, expires, mac = token.split(".")
    with pytest.raises(InvalidSignature):
        key.unsign(f"{encoded}.{int(expires) + 1000}.{mac}", purpose="mfa")
    for bad in ("", "a.b", "a.b.c.d", "....", "x.y.z", "\u2603.1.2"):
        with pytest.raises(InvalidSignature):
            key.unsign(bad, purpose="mfa")


def test_signed_values_expire(key: ServerKey, monkeypatch: pytest.MonkeyPatch) -> None:
    token = key.sign("user-1", purpose="mfa", ttl_s=10)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 11)
    with pytest.raises(InvalidSignature):
        key.unsign(token, purpose="mfa")


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        ServerKey(b"short")


def test_load_makes_a_key_file_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = ServerKey.load(settings)
    path = tmp_path / "data" / KEY_FILE
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    sealed = first.encrypt("secret", context="c")
    # The next start reads the same key.
    assert ServerKey.load(settings).decrypt(sealed, context="c") == "secret"


def test_configured_key_wins(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key="s" * 40)
    key = ServerKey.load(settings)
    assert not (tmp_path / "data" / KEY_FILE).exists()
    assert key.digest("x", purpose="p") == ServerKey(b"s" * 40).digest("x", purpose="p")
    with pytest.raises(ValueError):
        ServerKey.load(Settings(data_dir=tmp_path / "data", secret_key="too short"))
