"""The POP3 door's settings and its place among the doors of ``postern serve``."""

from __future__ import annotations

import pytest

from postern.config import DOORS, Settings, load_settings
from postern.serve.runtime import Runtime
from postern.serve.server import start_pop3_doors


def test_defaults() -> None:
    settings = Settings()
    assert settings.pop3_listen == "127.0.0.1:1110"
    assert settings.pop3s_listen is None
    assert settings.pop3_timeout == 600
    assert "pop3" in DOORS and "pop3" in settings.enabled_doors


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTERN_POP3_LISTEN", "0.0.0.0:110")
    monkeypatch.setenv("POSTERN_POP3S_LISTEN", "0.0.0.0:995")
    settings = load_settings()
    assert (settings.pop3_listen, settings.pop3s_listen) == ("0.0.0.0:110", "0.0.0.0:995")
    monkeypatch.setenv("POSTERN_POP3S_LISTEN", "")
    assert load_settings().pop3s_listen is None
    monkeypatch.setenv("POSTERN_POP3S_LISTEN", "nowhere")
    with pytest.raises(ValueError, match="pop3s_listen"):
        load_settings()


async def test_not_opened_when_not_among_the_doors(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(update={"doors": "http,smtp", "pop3_listen": "127.0.0.1:0"})
    assert await start_pop3_doors(runtime) == {}


async def test_pop3s_only_when_set(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(update={"pop3_listen": "127.0.0.1:0", "pop3s_listen": None})
    listeners = await start_pop3_doors(runtime)
    try:
        assert set(listeners) == {"pop3"}
    finally:
        for server in listeners.values():
            server.close()
            await server.wait_closed()
