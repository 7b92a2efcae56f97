"""The ``postern`` command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from postern import __version__
from postern.cli.common import ConfigOption, console, error_console
from postern.cli.common import load as _settings
from postern.cli.operator import domain_app, queue_app, user_app

app = typer.Typer(help="postern: a self-hosted mail platform.", no_args_is_help=True, add_completion=False)
app.add_typer(user_app, name="user")
app.add_typer(domain_app, name="domain")
app.add_typer(queue_app, name="queue")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"postern {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")] = False,
) -> None:
    """postern: a self-hosted mail platform."""


def _uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run postern: the HTTP API (and the mail doors) in one process."""
    from postern.serve.logs import configure

    settings = _settings(config)
    configure(settings.log_level, settings.log_format)
    if settings.metrics:
        # Before prometheus_client is imported: the mail workers' metrics reach /metrics
        # through their files there (postern/telemetry/metrics.py).
        from postern.telemetry.metrics import prepare_multiprocess

        prepare_multiprocess(settings.data_dir)
    from postern.serve.server import serve as run

    _uvloop()
    try:
        asyncio.run(run(settings, announce=lambda line: console.print(line, highlight=False, markup=False)))
    except OSError as error:
        error_console.print(f"[red]cannot start:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply the database migrations (serve also does this at start)."""
    from postern.storage.database import Database, current_revision
    from postern.storage.database import migrate as run

    settings = _settings(config)

    async def main() -> str | None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url, schema=settings.database_schema)
        try:
            await run(db)
            return await current_revision(db)
        finally:
            await db.close()

    console.print(f"database at revision {asyncio.run(main())}")


@app.command()
def token(config: ConfigOption = None) -> None:
    """Make a new admin access token; the old one stops working."""
    from postern.serve.runtime import Runtime

    settings = _settings(config)
    if settings.admin_token:
        error_console.print("the admin token is set by the configuration (POSTERN_ADMIN_TOKEN); change it there")
        raise typer.Exit(1)

    async def main() -> str:
        runtime = Runtime.build(settings)
        try:
            await runtime.start()
            return await runtime.admin_token.rotate()
        finally:
            await runtime.close()

    new = asyncio.run(main())
    console.print(f"new admin token (shown only now): {new}", highlight=False, markup=False)


@app.command()
def dkim(
    domain: Annotated[str, typer.Argument(help="The sending domain, e.g. example.com")],
    selector: Annotated[str | None, typer.Option(help="DNS selector; default postern + year and month")] = None,
    algorithm: Annotated[str, typer.Option(help="rsa-sha256 or ed25519-sha256")] = "rsa-sha256",
    config: ConfigOption = None,
) -> None:
    """Create (or replace) DKIM signing key of DOMAIN and print the DNS record to publish."""
    from postern.delivery.dkim_keys import create_key
    from postern.errors import InvalidInput
    from postern.storage.database import Database
    from postern.storage.database import migrate as run_migrations

    if algorithm not in ("rsa-sha256", "ed25519-sha256"):
        error_console.print("algorithm must be rsa-sha256 or ed25519-sha256")
        raise typer.Exit(2)
    settings = _settings(config)

    async def main() -> tuple[str, str]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url, schema=settings.database_schema)
        try:
            await run_migrations(db)
            _, name, value = await create_key(db, domain, selector=selector, algorithm=algorithm)
            return name, value
        finally:
            await db.close()

    try:
        name, value = asyncio.run(main())
    except InvalidInput as error:
        error_console.print(f"invalid domain: {error}")
        raise typer.Exit(2) from None
    console.print("Publish this TXT record, then mail from this domain is signed:", highlight=False)
    # A TXT string holds at most 255 characters; longer values are several strings.
    strings = " ".join(f'"{value[i : i + 250]}"' for i in range(0, len(value), 250))
    console.print(f"{name}. IN TXT {strings}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def main() -> None:
    app()
