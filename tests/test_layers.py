"""The house rules of CONTRIBUTING.md, read from the source: imports between rooms
point one way, none go round in a circle inside a room (unless the import says why),
the process layer is on top, and no source file is over 800 lines.

A room is a folder of ``src/postern`` (``protocols/imap``, ``protocols/pop3`` and
``protocols/smtp`` are rooms of their own; ``http`` is one room with its ``admin`` and
``api``); each module at the package root is a room of its own. Every import counts:
at the top of a module, inside a function, and under ``TYPE_CHECKING``.

An import inside a room may close a circle only when its line, or the comment line
just above it, says ``import cycle:`` and why.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "postern"
MAX_LINES = 800
EXPLAINED = "import cycle:"
# Rooms that are a folder below a folder.
NESTED_ROOMS = ("protocols",)
# The process layer composes everything; only the command line starts it.
TOP = "postern.serve"
MAY_IMPORT_TOP = {"postern.cli", "postern.__main__", TOP}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    path: Path
    line: int
    explained: bool


def _modules() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(SRC).with_suffix("")
        if "migrations" in relative.parts:
            continue  # Alembic's scripts, loaded by Alembic
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


MODULES = _modules()


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in NESTED_ROOMS:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # ``from package import module`` imports the module; ``from module import name`` the module.
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix for alias in node.names]
    found = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module:
            found.append(name)
    return found


def _explained(lines: list[str], line: int) -> bool:
    here = lines[line - 1]
    above = lines[line - 2].strip() if line >= 2 else ""
    return EXPLAINED in here or (above.startswith("#") and EXPLAINED in above)


def _imports() -> list[Import]:
    found = []
    for module, (path, is_package) in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, is_package, node):
                    found.append(Import(module, target, path, node.lineno, _explained(lines, node.lineno)))
    return found


IMPORTS = _imports()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def _where(imports: list[Import], members: list[str], same_room: bool) -> str:
    inside = set(members)
    shown = []
    for item in imports:
        ends = (room_of(item.source), room_of(item.target)) if not same_room else (item.source, item.target)
        if ends[0] in inside and ends[1] in inside and ends[0] != ends[1]:
            shown.append(f"  {item.path.relative_to(SRC)}:{item.line} {item.source} -> {item.target}")
    return "\n".join(shown)


def test_the_source_is_found() -> None:
    assert "postern.serve.runtime" in MODULES and IMPORTS


def test_no_cycle_between_rooms() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for item in IMPORTS:
        a, b = room_of(item.source), room_of(item.target)
        if a != b:
            edges[a].add(b)
    problems = [" <-> ".join(c) + "\n" + _where(IMPORTS, c, same_room=False) for c in _cycles(edges)]
    assert not problems, "imports between rooms go round in a circle:\n" + "\n".join(problems)


def test_no_unexplained_cycle_inside_a_room() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    kept = [i for i in IMPORTS if room_of(i.source) == room_of(i.target) and not i.explained]
    for item in kept:
        edges[item.source].add(item.target)
    problems = [" <-> ".join(c) + "\n" + _where(kept, c, same_room=True) for c in _cycles(edges)]
    assert not problems, f"imports inside a room go round in a circle (an import may say {EXPLAINED!r} why):\n" + "\n".join(problems)


def test_the_process_layer_is_on_top() -> None:
    upward = [
        f"{i.path.relative_to(SRC)}:{i.line} {i.source} -> {i.target}"
        for i in IMPORTS
        if room_of(i.target) == TOP and room_of(i.source) not in MAY_IMPORT_TOP
    ]
    assert not upward, "only the command line may import the process layer:\n" + "\n".join(upward)


def test_the_package_root_holds_only_its_face() -> None:
    # The command line may be a module or a package of its own (``cli/``).
    root = {p.name for p in PACKAGE.glob("*.py")}
    assert root <= {"__init__.py", "__main__.py", "cli.py", "config.py", "errors.py", "events.py"}, sorted(root)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_over_800_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines: split it along its seams"
