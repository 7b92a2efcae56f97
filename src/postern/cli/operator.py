"""`postern user`, `postern domain` and `postern queue`: the operator's everyday
commands, on the same services as the admin API.

They work on the database directly, so they also work while `postern serve` runs
(and when it does not). A change takes effect for new logins and deliveries at once;
sessions already open hear of it through Redis when one connects the processes (see
the README), else they keep going until they log in again."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from postern.cli.common import ConfigOption, console, error_console, load
from postern.errors import DomainError

T = TypeVar("T")

user_app = typer.Typer(help="Users: add, list, show, change the password, disable, delete.", no_args_is_help=True)
domain_app = typer.Typer(help="Hosted domains: add (with DKIM key and DNS records), list, check, remove.", no_args_is_help=True)
queue_app = typer.Typer(help="The outbound queue: list, show, retry, delete.", no_args_is_help=True)


def run(config: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """Runs ``work(runtime)`` with a runtime on the configured database; a domain
    error becomes a message and exit status 1 (2 for bad input)."""
    from postern.errors import InvalidInput
    from postern.serve.runtime import Runtime

    settings = load(config)

    async def main() -> T:
        runtime = Runtime.build(settings)
        try:
            await runtime.start(create_token=False)
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except DomainError as error:
        error_console.print(f"[red]error:[/red] {escape(error.message)}")
        raise typer.Exit(2 if isinstance(error, InvalidInput) else 1) from None


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on a terminal (cells folded, never cut short: ids and addresses get
    copied); tab-separated lines with a header line elsewhere, for scripts."""
    if not console.is_terminal:
        for line in (columns, *rows):
            typer.echo("\t".join(str(cell) for cell in line))  # rich would expand the tabs
        return
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    console.print(table)


def _when(ms: int | None) -> str:
    return "-" if not ms else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _new_password(given: str | None) -> str:
    if given:
        return given
    first = getpass.getpass("new password: ")
    if first != getpass.getpass("again: "):
        error_console.print("[red]error:[/red] the passwords differ")
        raise typer.Exit(2)
    return first


async def _user_id(runtime: Any, who: str) -> str:
    """A user by id, username or address."""
    from postern.errors import NotFound

    row = await runtime.accounts.find_login(who)
    if row is None and len(who) == 24:
        try:
            row, _ = await runtime.accounts.get_user(who)
        except NotFound:
            row = None
    if row is None:
        raise NotFound(f"no user {who}")
    return str(row.id)


# Users -------------------------------------------------------------------------------

Password = Annotated[str | None, typer.Option("--password", help="The password (asked for when not given; beware of shell history)")]


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name (letters, digits, ._-) or an email address")],
    address: Annotated[str | None, typer.Option(help="Main email address (default: username@POSTERN_DOMAIN)")] = None,
    password: Password = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    quota: Annotated[int | None, typer.Option(help="Storage quota in bytes")] = None,
    config: ConfigOption = None,
) -> None:
    """Add a user with a main address (and its folders)."""
    from postern.accounts.service import NewUser

    secret = _new_password(password)

    async def work(runtime: Any) -> str:
        return await runtime.accounts.create_user(NewUser(username=username, password=secret, address=address, name=name, quota=quota))

    user_id = run(config, work)
    console.print(f"user {username} added: id {user_id}", highlight=False, markup=False)


@user_app.command("list")
def user_list(
    query: Annotated[str | None, typer.Option(help="Only usernames or addresses containing this")] = None,
    config: ConfigOption = None,
) -> None:
    """List users."""

    async def work(runtime: Any) -> list[Any]:
        rows, _tags, _total = await runtime.accounts.list_users(query=query, any_tags=[], all_tags=[], limit=10_000, cursor=None)
        return rows[:10_000]

    rows = []
    for row in run(config, work):
        state = "disabled" if row.disabled else ("inactive" if not row.activated else "active")
        rows.append((row.id, row.username, row.address or "", row.name or "", str(row.storage_used), str(row.quota_allowed), state))
    _print_rows(("id", "username", "address", "name", "used", "quota", "state"), rows)


@user_app.command("show")
def user_show(
    user: Annotated[str, typer.Argument(help="Username, address or id")],
    config: ConfigOption = None,
) -> None:
    """Show a user, its addresses and its folders."""

    async def work(runtime: Any) -> tuple[Any, list[Any], list[Any], list[str]]:
        user_id = await _user_id(runtime, user)
        row, _tags, methods = await runtime.accounts.user_details(user_id)
        addresses = await runtime.accounts.list_addresses(user_id)
        folders = await runtime.mailstore.list_folders(user_id)
        return row, addresses, folders, methods

    row, addresses, folders, methods = run(config, work)
    console.print(f"id:        {row.id}", highlight=False, markup=False)
    console.print(f"username:  {row.username}", highlight=False, markup=False)
    console.print(f"name:      {row.name or ''}", highlight=False, markup=False)
    console.print(f"state:     {'disabled' if row.disabled else 'active'}", highlight=False, markup=False)
    console.print(f"storage:   {row.storage_used} of {row.quota_allowed} bytes", highlight=False, markup=False)
    console.print(f"2FA:       {', '.join(methods) or 'off'}", highlight=False, markup=False)
    console.print(f"created:   {_when(row.created_ms)}", highlight=False, markup=False)
    for address in addresses:
        console.print(f"address:   {address.address}{'  (main)' if address.main else ''}", highlight=False, markup=False)
    for folder in folders:
        console.print(f"folder:    {folder.path}", highlight=False, markup=False)


@user_app.command("passwd")
def user_passwd(
    user: Annotated[str, typer.Argument(help="Username, address or id")],
    password: Password = None,
    config: ConfigOption = None,
) -> None:
    """Set a user's password."""
    secret = _new_password(password)

    async def work(runtime: Any) -> None:
        await runtime.accounts.update_user(await _user_id(runtime, user), {"password": secret})

    run(config, work)
    console.print("password changed", highlight=False)


@user_app.command("disable")
def user_disable(
    user: Annotated[str, typer.Argument(help="Username, address or id")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the account again instead")] = False,
    config: ConfigOption = None,
) -> None:
    """Disable a user (no login, no delivery to it), or enable it again with --enable."""

    async def work(runtime: Any) -> None:
        await runtime.accounts.update_user(await _user_id(runtime, user), {"disabled": not enable})

    run(config, work)
    console.print("enabled" if enable else "disabled", highlight=False)


@user_app.command("delete")
def user_delete(
    user: Annotated[str, typer.Argument(help="Username, address or id")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete a user with all its mail."""
    if not yes and not typer.confirm(f"delete {user} and all its mail?"):
        raise typer.Exit(1)

    async def work(runtime: Any) -> None:
        await runtime.accounts.delete_user(await _user_id(runtime, user))

    run(config, work)
    console.print("deleted", highlight=False)


# Domains -----------------------------------------------------------------------------


def _print_records(records: list[Any]) -> None:
    for record in records:
        console.print(record.zone_line(), highlight=False, markup=False)


@domain_app.command("add")
def domain_add(
    domain: Annotated[str, typer.Argument(help="The domain, e.g. example.com")],
    config: ConfigOption = None,
) -> None:
    """Host a domain: make its DKIM key and print every DNS record it needs."""

    async def work(runtime: Any) -> tuple[Any, bool, list[Any]]:
        entry, new = await runtime.hosted_domains.add(domain)
        return entry, new, await runtime.hosted_domains.records(entry.domain)

    entry, new, records = run(config, work)
    console.print(f"{entry.domain} {'added' if new else 'was hosted already'}. Publish these DNS records:", highlight=False, markup=False)
    _print_records(records)


@domain_app.command("records")
def domain_records(
    domain: Annotated[str, typer.Argument(help="A hosted domain")],
    config: ConfigOption = None,
) -> None:
    """Print the DNS records a hosted domain needs."""

    async def work(runtime: Any) -> list[Any]:
        return await runtime.hosted_domains.records(domain)

    _print_records(run(config, work))


@domain_app.command("list")
def domain_list(config: ConfigOption = None) -> None:
    """List the hosted domains and why each is hosted."""

    async def work(runtime: Any) -> list[Any]:
        return await runtime.hosted_domains.hosted()

    rows = []
    for entry in run(config, work):
        name = entry.domain if entry.display == entry.domain else f"{entry.display} ({entry.domain})"
        rows.append((name, ", ".join(entry.sources), str(entry.addresses), entry.dkim_selector or "-"))
    _print_rows(("domain", "hosted because of", "addresses", "DKIM selector"), rows)


@domain_app.command("remove")
def domain_remove(
    domain: Annotated[str, typer.Argument(help="A domain added with `domain add`")],
    config: ConfigOption = None,
) -> None:
    """Forget a domain added ahead of its addresses (its DKIM key is kept)."""

    async def work(runtime: Any) -> None:
        await runtime.hosted_domains.remove(domain)

    run(config, work)
    console.print("removed", highlight=False)


@domain_app.command("check")
def domain_check(
    domain: Annotated[str, typer.Argument(help="A hosted domain")],
    config: ConfigOption = None,
) -> None:
    """Check through DNS that the domain publishes every record it needs."""

    async def work(runtime: Any) -> list[Any]:
        return await runtime.hosted_domains.check(domain)

    checks = run(config, work)
    for check in checks:
        mark = "ok  " if check.ok else "MISSING"
        console.print(f"{mark} {check.record.zone_line()}", highlight=False, markup=False)
        if not check.ok:
            found = "; ".join(check.found) if check.found else "nothing"
            console.print(f"     found: {found}{'  (' + check.error + ')' if check.error else ''}", highlight=False, markup=False)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


# Queue -------------------------------------------------------------------------------


@queue_app.command("list")
def queue_list(
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only these states (queued, sending, deferred, delivered, bounced, cancelled); default: waiting"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List queued messages, oldest first."""
    from postern.delivery.queue_admin import WAITING

    async def work(runtime: Any) -> list[Any]:
        return await runtime.queue_admin.messages(states=state or WAITING)

    messages = run(config, work)
    rows = []
    for message in messages:
        waiting = [r for r in message.recipients if r.state in ("queued", "deferred")]
        rows.append(
            (
                message.queue_id,
                message.state,
                message.mail_from or "<>",
                ", ".join(r.rcpt for r in message.recipients),
                str(max(r.attempts for r in message.recipients)),
                _when(message.created_ms),
                _when(min(r.next_attempt_ms for r in waiting)) if waiting else "-",
                (message.recipients[-1].last_response or "")[:80],
            )
        )
    _print_rows(("queue id", "state", "from", "to", "attempts", "created", "next attempt", "last response"), rows)
    console.print(f"{len(messages)} message(s)", highlight=False)


@queue_app.command("show")
def queue_show(
    queue_id: Annotated[str, typer.Argument(help="The queue id")],
    config: ConfigOption = None,
) -> None:
    """Show a message's envelope, each recipient's attempts and last error."""

    async def work(runtime: Any) -> Any:
        return await runtime.queue_admin.show(queue_id)

    message = run(config, work)
    console.print(f"queue id:  {message.queue_id}", highlight=False, markup=False)
    console.print(f"user:      {message.user_id or '-'}", highlight=False, markup=False)
    console.print(f"from:      <{message.mail_from}>", highlight=False, markup=False)
    console.print(f"state:     {message.state}", highlight=False, markup=False)
    console.print(f"created:   {_when(message.created_ms)}", highlight=False, markup=False)
    console.print(f"expires:   {_when(message.expires_ms)}", highlight=False, markup=False)
    for r in message.recipients:
        due = f", next attempt {_when(r.next_attempt_ms)}" if r.state in ("queued", "deferred") else ""
        via = f" via {r.target}" if r.target else ""
        console.print(f"to:        <{r.rcpt}>{via}: {r.state}, {r.attempts} attempt(s){due}", highlight=False, markup=False)
        if r.last_response:
            console.print(f"           last response: {r.last_response}", highlight=False, markup=False)


@queue_app.command("retry")
def queue_retry(
    queue_id: Annotated[str, typer.Argument(help="The queue id")],
    config: ConfigOption = None,
) -> None:
    """Try a deferred message again now (at the running queue's next look, within a minute)."""

    async def work(runtime: Any) -> int:
        return await runtime.queue_admin.retry(queue_id)

    console.print(f"{run(config, work)} recipient(s) due now", highlight=False)


@queue_app.command("delete")
def queue_delete(
    queue_id: Annotated[str, typer.Argument(help="The queue id")],
    config: ConfigOption = None,
) -> None:
    """Cancel a queued message: its waiting recipients are not tried again (no bounce)."""

    async def work(runtime: Any) -> int:
        return await runtime.queue_admin.cancel(queue_id)

    console.print(f"{run(config, work)} recipient(s) cancelled", highlight=False)
