"""The ``postern`` command line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from postern import __version__
from postern.config import Settings, load_settings

app = typer.Typer(help="postern: a self-hosted mail platform.", no_args_is_help=True, add_completion=False)
console = Console()
error_console = Console(stderr=True)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="TOML configuration file (environment variables POSTERN_* take precedence)", envvar="POSTERN_CONFIG"),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValidationError, ValueError) as error:
        error_console.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from None


def _uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run postern: the HTTP API (and the mail doors) in one process."""
    from postern.server import serve as run

    settings = _settings(config)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _uvloop()
    try:
        asyncio.run(run(settings, announce=lambda line: console.print(line, highlight=False, markup=False)))
    except OSError as error:
        error_console.print(f"[red]cannot start:[/red] {error}")
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
    from postern.runtime import Runtime

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
def version() -> None:
    """Print the version."""
    console.print(__version__)


def main() -> None:
    app()
