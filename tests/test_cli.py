"""The ``postern`` command line: version, migrate, token, help and configuration errors."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

import postern.storage
from postern import __version__
from postern.cli import app
from postern.config import load_settings
from postern.serve.runtime import Runtime

TEST_DATABASE_URL = os.environ.get("POSTERN_TEST_DATABASE_URL")
HEAD = ScriptDirectory(str(Path(postern.storage.__file__).parent / "migrations")).get_current_head()
TOKEN_LINE = re.compile(r"new admin token \(shown only now\): (\S+)")


def _drop_schema(url: str, schema: str) -> None:
    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A clean POSTERN_* environment with a data directory and a database of this test's own
    (the same source as the shared fixtures: SQLite, or a fresh PostgreSQL schema)."""
    for name in list(os.environ):
        if name.startswith("POSTERN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    values = {
        "POSTERN_DATA_DIR": str(tmp_path / "data"),
        "POSTERN_FSYNC": "false",
        "POSTERN_ARGON2_TIME_COST": "1",
        "POSTERN_ARGON2_MEMORY_KIB": "8",
    }
    schema = None
    if TEST_DATABASE_URL:
        schema = f"t_{secrets.token_hex(6)}"
        values["POSTERN_DATABASE_URL"] = TEST_DATABASE_URL
        values["POSTERN_DATABASE_SCHEMA"] = schema
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    try:
        yield values
    finally:
        if TEST_DATABASE_URL and schema:
            _drop_schema(TEST_DATABASE_URL, schema)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _tables() -> set[str]:
    settings = load_settings()

    async def main() -> set[str]:
        kwargs = {}
        if settings.database_schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": settings.database_schema}}
        engine = create_async_engine(settings.resolved_database_url, **kwargs)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _token_checks(*tokens: str) -> list[bool]:
    """Which of these tokens the stored admin token digest accepts (a fresh process's view)."""

    async def main() -> list[bool]:
        runtime = Runtime.build(load_settings())
        try:
            await runtime.start()
            return [await runtime.admin_token.check(t) for t in tokens]
        finally:
            await runtime.close()

    return asyncio.run(main())


# version and help ------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == __version__


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    # no_args_is_help: the usage, and click's exit status for a usage answer.
    assert "Usage" in result.output
    for command in ("serve", "migrate", "token", "version"):
        assert command in result.output


def test_python_dash_m_help() -> None:
    result = subprocess.run([sys.executable, "-m", "postern", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    for command in ("serve", "migrate", "token", "version"):
        assert command in result.stdout
    assert "Traceback" not in result.stderr


def test_python_dash_m_version() -> None:
    result = subprocess.run([sys.executable, "-m", "postern", "version"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "postern"
    if not script.exists():
        pytest.skip("the postern console script is not installed beside this interpreter")
    result = subprocess.run([str(script), "version"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_unknown_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["frobnicate"])
    assert result.exit_code == 2
    assert "frobnicate" in result.output


# migrate ---------------------------------------------------------------------------------


def test_migrate_creates_the_database_and_is_idempotent(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0, first.output
    assert f"database at revision {HEAD}" in first.stdout
    if not TEST_DATABASE_URL:
        assert (tmp_path / "data" / "postern.sqlite3").is_file()
    tables = _tables()
    assert {"users", "alembic_version"} <= tables

    second = runner.invoke(app, ["migrate"])
    assert second.exit_code == 0, second.output
    assert f"database at revision {HEAD}" in second.stdout
    assert _tables() == tables


def test_migrate_with_config_file(runner: CliRunner, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTERN_DATA_DIR")
    config = tmp_path / "postern.toml"
    config.write_text(f'data_dir = "{tmp_path / "toml-data"}"\n', encoding="utf-8")

    result = runner.invoke(app, ["migrate", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert f"database at revision {HEAD}" in result.stdout
    if not TEST_DATABASE_URL:
        assert (tmp_path / "toml-data" / "postern.sqlite3").is_file()
        assert not (tmp_path / "data").exists()


# token -----------------------------------------------------------------------------------


def test_token_prints_a_new_token_each_time(runner: CliRunner, env: dict[str, str]) -> None:
    first = runner.invoke(app, ["token"])
    assert first.exit_code == 0, first.output
    match = TOKEN_LINE.search(first.stdout)
    assert match, first.stdout
    old = match.group(1)
    assert len(old) >= 32

    second = runner.invoke(app, ["token"])
    assert second.exit_code == 0, second.output
    match = TOKEN_LINE.search(second.stdout)
    assert match, second.stdout
    new = match.group(1)
    assert new != old

    # Only the newest token opens the admin API; the old one stopped working.
    assert _token_checks(new, old, "not-a-token") == [True, False, False]


def test_token_refuses_when_the_token_is_configured(runner: CliRunner, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTERN_ADMIN_TOKEN", "configured-token")

    result = runner.invoke(app, ["token"])

    assert result.exit_code == 1
    assert "POSTERN_ADMIN_TOKEN" in result.stderr
    assert "new admin token" not in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_token_subprocess(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "postern", "token"], check=False, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    match = TOKEN_LINE.search(result.stdout)
    assert match, result.stdout
    assert _token_checks(match.group(1)) == [True]


# configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "migrate", "token"])
def test_missing_config_file(runner: CliRunner, env: dict[str, str], tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing.toml"
    result = runner.invoke(app, [command, "--config", str(missing)])
    assert result.exit_code == 2
    assert "configuration error" in result.stderr
    assert "missing.toml" in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ('http_listen = "nowhere"\n', "http_listen"),
        ("default_quota = -5\n", "default_quota"),
        ("domain = \n", "configuration error"),
    ],
)
def test_invalid_config_file(runner: CliRunner, env: dict[str, str], tmp_path: Path, text: str, mentions: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["migrate", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "configuration error" in result.stderr
    assert mentions in result.stderr


def test_invalid_environment_value(runner: CliRunner, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTERN_HTTP_LISTEN", "nowhere")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "configuration error" in result.stderr
    assert "http_listen" in result.stderr


def test_bad_config_file_subprocess(env: dict[str, str], tmp_path: Path) -> None:
    """The real program: exit status 2 and one clear line, not a traceback."""
    config = tmp_path / "bad.toml"
    config.write_text('http_listen = "nowhere"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "postern", "serve", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "Traceback" not in result.stderr

    missing = subprocess.run(
        [sys.executable, "-m", "postern", "migrate"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POSTERN_CONFIG": str(tmp_path / "missing.toml")},
    )
    assert missing.returncode == 2
    assert "configuration file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
