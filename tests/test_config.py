"""Settings: defaults, the environment, the TOML file and listen addresses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from postern.config import ListenAddress, Settings, load_settings, parse_listen


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No POSTERN_* variable from the caller's environment, and a scratch working directory."""
    for name in list(os.environ):
        if name.startswith("POSTERN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Defaults ----------------------------------------------------------------------------


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.data_dir == Path("./postern-data")
    assert settings.http_listen == "127.0.0.1:8080"
    assert settings.http_address == ListenAddress("127.0.0.1", 8080)
    assert settings.database_url is None
    expected_db = (tmp_path / "postern-data" / "postern.sqlite3").resolve()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected_db}"
    assert settings.resolved_blob_store == str((tmp_path / "postern-data" / "blobs").resolve())
    assert settings.admin_token is None
    assert settings.admin_auth is True
    assert settings.domain == "localhost"
    assert settings.default_quota == 1 << 30
    assert settings.max_message_size == 50 * 1024 * 1024
    assert settings.fsync is True
    assert settings.config_file is None


def test_database_url_follows_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "elsewhere")
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'elsewhere' / 'postern.sqlite3').resolve()}"
    assert settings.resolved_blob_store == str((tmp_path / "elsewhere" / "blobs").resolve())


# Environment ---------------------------------------------------------------------------


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POSTERN_DATABASE_URL", "postgresql+asyncpg://postern@db.internal/postern")
    monkeypatch.setenv("POSTERN_DATABASE_SCHEMA", "tenant_a")
    monkeypatch.setenv("POSTERN_BLOB_STORE", "s3://bucket/prefix")
    monkeypatch.setenv("POSTERN_HTTP_LISTEN", "0.0.0.0:80")
    monkeypatch.setenv("POSTERN_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("POSTERN_ADMIN_AUTH", "false")
    monkeypatch.setenv("POSTERN_DOMAIN", "example.com")
    monkeypatch.setenv("POSTERN_HOSTNAME", "mx.example.com")
    monkeypatch.setenv("POSTERN_DEFAULT_QUOTA", "1024")
    monkeypatch.setenv("POSTERN_MAX_MESSAGE_SIZE", "2048")
    monkeypatch.setenv("POSTERN_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("POSTERN_ARGON2_MEMORY_KIB", "8")
    monkeypatch.setenv("POSTERN_GC_INTERVAL", "12.5")
    monkeypatch.setenv("POSTERN_FSYNC", "false")
    monkeypatch.setenv("POSTERN_LOG_LEVEL", "debug")

    settings = load_settings()

    assert settings.data_dir == tmp_path / "data"
    assert settings.resolved_database_url == "postgresql+asyncpg://postern@db.internal/postern"
    assert settings.database_schema == "tenant_a"
    assert settings.resolved_blob_store == "s3://bucket/prefix"
    assert settings.http_address == ListenAddress("0.0.0.0", 80)
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.admin_auth is False
    assert settings.domain == "example.com"
    assert settings.hostname == "mx.example.com"
    assert settings.default_quota == 1024
    assert settings.max_message_size == 2048
    assert (settings.argon2_time_cost, settings.argon2_memory_kib) == (1, 8)
    assert settings.gc_interval == 12.5
    assert settings.fsync is False
    assert settings.log_level == "debug"


def test_every_listener_defaults_to_loopback_and_an_unprivileged_port() -> None:
    settings = load_settings()
    for name in ("http_listen", "smtp_listen", "lmtp_listen", "submission_listen"):
        address = parse_listen(getattr(settings, name))
        assert address.host == "127.0.0.1", name
        assert address.port >= 1024, name


@pytest.mark.parametrize("door", ["HTTP", "SMTP", "LMTP", "SUBMISSION"])
def test_door_listen_addresses_from_the_environment(monkeypatch: pytest.MonkeyPatch, door: str) -> None:
    monkeypatch.setenv(f"POSTERN_{door}_LISTEN", "0.0.0.0:1234")
    assert getattr(load_settings(), f"{door.lower()}_listen") == "0.0.0.0:1234"
    monkeypatch.setenv(f"POSTERN_{door}_LISTEN", "nowhere")
    with pytest.raises(ValidationError):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTERN_HTTP_LISTEN", "no-port-here"),
        ("POSTERN_HTTP_LISTEN", "127.0.0.1:99999"),
        ("POSTERN_DEFAULT_QUOTA", "-1"),
        ("POSTERN_MAX_MESSAGE_SIZE", "0"),
        ("POSTERN_ARGON2_MEMORY_KIB", "lots"),
        ("POSTERN_ADMIN_AUTH", "perhaps"),
    ],
)
def test_invalid_environment_values_raise(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load_settings()


def test_invalid_listen_address_in_arguments_raises() -> None:
    with pytest.raises(ValidationError):
        Settings(http_listen="localhost")


# TOML file -----------------------------------------------------------------------------


def _write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_file(tmp_path: Path) -> None:
    config = _write_toml(
        tmp_path / "postern.toml",
        f'data_dir = "{tmp_path / "from-toml"}"\n'
        'http_listen = "0.0.0.0:8081"\n'
        'domain = "example.org"\n'
        'database_url = "postgresql+asyncpg://postern@db.internal/postern"\n'
        "default_quota = 4096\n"
        "fsync = false\n",
    )

    settings = load_settings(config)

    assert settings.config_file == config
    assert settings.data_dir == tmp_path / "from-toml"
    assert settings.http_address == ListenAddress("0.0.0.0", 8081)
    assert settings.domain == "example.org"
    assert settings.resolved_database_url == "postgresql+asyncpg://postern@db.internal/postern"
    assert settings.default_quota == 4096
    assert settings.fsync is False
    # Not named in the file: defaults.
    assert settings.hostname == "localhost"


def test_environment_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = _write_toml(tmp_path / "postern.toml", 'domain = "from-toml.example"\nhostname = "toml-host"\n')
    monkeypatch.setenv("POSTERN_DOMAIN", "from-env.example")

    settings = load_settings(str(config))

    assert settings.domain == "from-env.example"
    assert settings.hostname == "toml-host"


def test_config_file_from_postern_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = _write_toml(tmp_path / "via-env.toml", 'domain = "via-env.example"\n')
    monkeypatch.setenv("POSTERN_CONFIG", str(config))

    settings = load_settings()

    assert settings.domain == "via-env.example"
    assert settings.config_file == config


def test_toml_is_not_remembered_between_loads(tmp_path: Path) -> None:
    config = _write_toml(tmp_path / "postern.toml", 'domain = "once.example"\n')
    assert load_settings(config).domain == "once.example"
    assert load_settings().domain == "localhost"
    assert Settings().domain == "localhost"


def test_missing_config_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not-there.toml"):
        load_settings(tmp_path / "not-there.toml")


def test_config_file_that_is_a_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path)


def test_invalid_listen_address_in_toml_raises(tmp_path: Path) -> None:
    config = _write_toml(tmp_path / "postern.toml", 'http_listen = "everywhere"\n')
    with pytest.raises(ValidationError):
        load_settings(config)


def test_invalid_toml_syntax_raises(tmp_path: Path) -> None:
    config = _write_toml(tmp_path / "postern.toml", "domain = \n")
    with pytest.raises(ValueError):
        load_settings(config)


# Listen addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ListenAddress("127.0.0.1", 8080)),
        ("0.0.0.0:80", ListenAddress("0.0.0.0", 80)),
        ("localhost:25", ListenAddress("localhost", 25)),
        ("mail.example.com:65535", ListenAddress("mail.example.com", 65535)),
        ("[::1]:8080", ListenAddress("::1", 8080)),
        ("[::]:143", ListenAddress("::", 143)),
        (":8080", ListenAddress("0.0.0.0", 8080)),
        ("  127.0.0.1:8080 ", ListenAddress("127.0.0.1", 8080)),
        ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
    ],
)
def test_parse_listen(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost",
        "8080",
        "127.0.0.1:",
        "127.0.0.1:http",
        "127.0.0.1:-1",
        "127.0.0.1:65536",
        "[::1]8080",
        "[::1]",
        "[::1]:",
        "[::1]:port",
    ],
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (ListenAddress("127.0.0.1", 8080), "127.0.0.1:8080"),
        (ListenAddress("::1", 8080), "[::1]:8080"),
    ],
)
def test_listen_address_str_round_trips(address: ListenAddress, text: str) -> None:
    assert str(address) == text
    assert parse_listen(str(address)) == address
