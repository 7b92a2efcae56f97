"""What every command shares: the consoles, the --config option, loading settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from postern.config import Settings, load_settings

# soft_wrap: never fold lines at the terminal width (paths, URLs and the token must
# stay whole, also when the output goes to a pipe, where rich assumes 80 columns).
console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML configuration file (environment variables POSTERN_* take precedence)", envvar="POSTERN_CONFIG"
    ),
]


def load(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValidationError, ValueError) as error:
        error_console.print(f"[red]configuration error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
