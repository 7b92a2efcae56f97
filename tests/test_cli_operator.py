"""`postern --version`, `postern user`, `postern domain` and `postern queue`, run as
an operator runs them (the commands' own database, no server)."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from postern import __version__
from postern.cli import app
from postern.config import load_settings
from postern.errors import AuthFailed, Forbidden
from postern.serve.runtime import Runtime
from tests.test_cli import env, runner  # noqa: F401 (fixtures)


def _login(login: str, password: str) -> bool:
    async def main() -> bool:
        runtime = Runtime.build(load_settings())
        try:
            await runtime.start(create_token=False)
            try:
                await runtime.accounts.authenticate(login, password)
            except (AuthFailed, Forbidden):
                return False
            return True
        finally:
            await runtime.close()

    return asyncio.run(main())


def test_version_option(runner: CliRunner) -> None:  # noqa: F811
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"postern {__version__}"


def test_user_lifecycle(env: dict[str, str], runner: CliRunner) -> None:  # noqa: F811
    added = runner.invoke(app, ["user", "add", "alice", "--address", "alice@example.com", "--password", "correct horse", "--name", "Alice"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["user", "list"])
    assert "alice@example.com" in listed.stdout and "active" in listed.stdout
    shown = runner.invoke(app, ["user", "show", "alice@example.com"])
    assert shown.exit_code == 0 and "username:  alice" in shown.stdout and "folder:    INBOX" in shown.stdout
    assert _login("alice", "correct horse")

    assert runner.invoke(app, ["user", "passwd", "alice", "--password", "battery staple"]).exit_code == 0
    assert not _login("alice", "correct horse") and _login("alice", "battery staple")

    assert runner.invoke(app, ["user", "disable", "alice"]).exit_code == 0
    assert "state:     disabled" in runner.invoke(app, ["user", "show", "alice"]).stdout
    assert not _login("alice", "battery staple")
    assert runner.invoke(app, ["user", "disable", "alice", "--enable"]).exit_code == 0
    assert _login("alice", "battery staple")

    assert runner.invoke(app, ["user", "delete", "alice"], input="n\n").exit_code == 1  # asked, and refused
    assert runner.invoke(app, ["user", "delete", "alice", "--yes"]).exit_code == 0
    assert runner.invoke(app, ["user", "show", "alice"]).exit_code == 1


def test_user_errors_are_messages(env: dict[str, str], runner: CliRunner) -> None:  # noqa: F811
    bad = runner.invoke(app, ["user", "add", "not a name!", "--password", "x"])
    assert bad.exit_code == 2 and "username" in bad.stderr and "Traceback" not in bad.output
    assert runner.invoke(app, ["user", "add", "bob", "--address", "bob@example.com", "--password", "pw"]).exit_code == 0
    taken = runner.invoke(app, ["user", "add", "bob", "--password", "pw"])
    assert taken.exit_code == 1 and "error" in taken.stderr
    assert runner.invoke(app, ["user", "passwd", "nobody", "--password", "x"]).exit_code == 1
    # The password is asked for twice when not given, and must match.
    mismatch = runner.invoke(app, ["user", "add", "carol"], input="one\ntwo\n")
    assert mismatch.exit_code == 2 and "differ" in mismatch.stderr


def test_domains(env: dict[str, str], runner: CliRunner) -> None:  # noqa: F811
    added = runner.invoke(app, ["domain", "add", "example.org"])
    assert added.exit_code == 0, added.output
    for needed in ("IN MX 10 ", "v=spf1", "._domainkey.example.org. 3600 IN TXT", "_dmarc.example.org.", "_mta-sts.example.org.", "_smtp._tls.example.org.", "_submission._tcp.example.org. 3600 IN SRV"):
        assert needed in added.stdout, needed
    assert runner.invoke(app, ["domain", "records", "example.org"]).stdout == added.stdout.split("\n", 1)[1]
    listing = runner.invoke(app, ["domain", "list"]).stdout
    assert "example.org" in listing and "added" in listing
    assert runner.invoke(app, ["domain", "add", "bad domain"]).exit_code == 2
    assert runner.invoke(app, ["domain", "remove", "example.org"]).exit_code == 0
    assert runner.invoke(app, ["domain", "records", "example.org"]).exit_code == 1


def test_queue_commands_on_an_empty_queue(env: dict[str, str], runner: CliRunner) -> None:  # noqa: F811
    listed = runner.invoke(app, ["queue", "list"])
    assert listed.exit_code == 0 and "0 message(s)" in listed.stdout
    missing = runner.invoke(app, ["queue", "show", "0123456789abcdef01234567"])
    assert missing.exit_code == 1 and "not in the queue" in missing.stderr
    assert runner.invoke(app, ["queue", "list", "--state", "lost"]).exit_code == 2


def test_queue_commands_on_a_queued_message(env: dict[str, str], runner: CliRunner) -> None:  # noqa: F811
    assert runner.invoke(app, ["user", "add", "alice", "--address", "alice@example.com", "--password", "pw"]).exit_code == 0

    async def submit() -> str:
        runtime = Runtime.build(load_settings())
        try:
            await runtime.start(create_token=False)
            user = await runtime.accounts.find_login("alice")
            raw = b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: queued\r\n\r\nhello\r\n"
            result = await runtime.submission.submit(
                user_id=user.id, mail_from="alice@example.com", recipients=["bob@example.net"], data=raw, client_ip="127.0.0.1", helo="cli.test", transtype="ESMTPA"
            )
            return str(result.queue_id)
        finally:
            await runtime.close()

    queue_id = asyncio.run(submit())
    listed = runner.invoke(app, ["queue", "list"])
    assert queue_id in listed.stdout and "bob@example.net" in listed.stdout and "1 message(s)" in listed.stdout
    shown = runner.invoke(app, ["queue", "show", queue_id])
    assert "from:      <alice@example.com>" in shown.stdout and "to:        <bob@example.net>: queued" in shown.stdout
    assert "1 recipient(s) due now" in runner.invoke(app, ["queue", "retry", queue_id]).stdout
    assert "1 recipient(s) cancelled" in runner.invoke(app, ["queue", "delete", queue_id]).stdout
    assert "0 message(s)" in runner.invoke(app, ["queue", "list"]).stdout
    assert "cancelled" in runner.invoke(app, ["queue", "list", "--state", "cancelled"]).stdout
