"""What a filter is: its query and action as stored, checked on the way in, and the
human-readable descriptions WildDuck's listings give.

A filter's query is a JSON object with any of ``from``, ``to``, ``subject``,
``listId``, ``text`` (strings), ``ha`` (boolean) and ``size`` (integer); its action
any of ``seen``, ``flag``, ``delete``, ``spam`` (booleans), ``mailbox`` (a folder id)
and ``targets`` (forward targets: addresses, ``smtp(s)://`` relays, ``http(s)://``
web hooks). Pure functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from postern.errors import InvalidInput

HEADER_KEYS = ("from", "to", "subject", "listId")
QUERY_KEYS = (*HEADER_KEYS, "text", "ha", "size")
FLAG_ACTIONS = ("seen", "flag", "delete", "spam")
ACTION_KEYS = (*FLAG_ACTIONS, "mailbox", "targets")
MAX_QUERY_TEXT = 255
MAX_TARGETS = 100
MAX_TARGET_LENGTH = 1024
_SPACES = re.compile(r"\s+")
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+\.[^\s@<>()\[\],;:\"\\]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "mail", "relay" or "http"
    value: str


def target_of(value: str) -> Target:
    """A forward target as WildDuck reads one: a relay URL, a web hook URL, or an
    email address; anything else is refused."""
    if not isinstance(value, str) or not value or len(value) > MAX_TARGET_LENGTH or _CONTROL.search(value):
        raise InvalidInput(f'Unknown target type "{str(value)[:100]}"', field="targets")
    lowered = value.lower()
    if lowered.startswith(("smtp:", "smtps:", "http:", "https:")):
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("smtp", "smtps", "http", "https") or not parts.hostname:
            raise InvalidInput(f'Unknown target type "{value[:100]}"', field="targets")
        try:
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise InvalidInput(f'Invalid port in target "{value[:100]}"', field="targets") from None
        return Target("relay" if parts.scheme.lower().startswith("smtp") else "http", value)
    if _ADDRESS.match(value):
        return Target("mail", value)
    raise InvalidInput(f'Unknown target type "{value[:100]}"', field="targets")


def clean_query(query: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a query: empty values dropped, whitespace collapsed."""
    cleaned: dict[str, Any] = {}
    for key in HEADER_KEYS + ("text",):
        value = query.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidInput(f'"query.{key}" must be a string', field=f"query.{key}")
        value = _SPACES.sub(" ", value).strip()
        if len(value) > MAX_QUERY_TEXT:
            raise InvalidInput(
                f'"query.{key}" length must be less than or equal to {MAX_QUERY_TEXT} characters long',
                field=f"query.{key}",
            )
        if "\x00" in value:
            raise InvalidInput(f'"query.{key}" must not contain NUL characters', field=f"query.{key}")
        if value:
            cleaned[key] = value
    if query.get("ha") is not None:
        if not isinstance(query["ha"], bool):
            raise InvalidInput('"query.ha" must be a boolean', field="query.ha")
        cleaned["ha"] = query["ha"]
    size = query.get("size")
    if size is not None and size != "" and size != 0:
        if isinstance(size, bool) or not isinstance(size, int) or abs(size) > 2**53:
            raise InvalidInput('"query.size" must be a number', field="query.size")
        cleaned["size"] = size
    return cleaned


def clean_action(action: dict[str, Any]) -> dict[str, Any]:
    """The stored form of an action (the mailbox is checked by the caller)."""
    cleaned: dict[str, Any] = {}
    for key in FLAG_ACTIONS:
        value = action.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise InvalidInput(f'"action.{key}" must be a boolean', field=f"action.{key}")
        cleaned[key] = value
    mailbox = action.get("mailbox")
    if mailbox:
        if not isinstance(mailbox, str) or not re.fullmatch(r"[0-9a-fA-F]{24}", mailbox):
            raise InvalidInput(
                '"action.mailbox" must be a 24 character hex string',
                field="action.mailbox",
            )
        cleaned["mailbox"] = mailbox.lower()
    targets = action.get("targets")
    if targets:
        if not isinstance(targets, list):
            raise InvalidInput('"action.targets" must be an array', field="action.targets")
        if len(targets) > MAX_TARGETS:
            raise InvalidInput(
                f'"action.targets" must contain at most {MAX_TARGETS} items',
                field="action.targets",
            )
        cleaned["targets"] = list(dict.fromkeys(target_of(t).value for t in targets))
    return cleaned


def describe(query: dict[str, Any], action: dict[str, Any], folder_paths: dict[str, str]) -> tuple[list[list[Any]], list[list[Any]]]:
    """WildDuck's listing descriptions: ``[["from", "(abc)"], ["larger", 100]]`` and
    ``[["mark as read"], ["move to folder", "\\"Work\\""]]``."""
    described: list[list[Any]] = [[key, f"({query[key]})"] for key in HEADER_KEYS if key in query]
    if query.get("ha") is True:
        described.append(["has attachment"])
    elif query.get("ha") is False:
        described.append(["no attachments"])
    if query.get("text"):
        described.append([False, f'"{query["text"]}"'])
    size = query.get("size")
    if size:
        described.append(["larger" if size > 0 else "smaller", abs(size)])
    actions: list[list[Any]] = []
    words = {
        "seen": ("mark as read", "do not mark as read"),
        "flag": ("flag it", "do not flag it"),
        "spam": ("mark it as spam", "do not mark it as spam"),
        "delete": ("delete it", "do not delete it"),
    }
    for key in ACTION_KEYS:
        if key not in action:
            continue
        if key in words:
            actions.append([words[key][0 if action[key] else 1]])
        elif key == "mailbox":
            path = folder_paths.get(action[key])
            actions.append(["move to folder", f'"{path}"' if path is not None else action[key]])
        elif key == "targets" and action[key]:
            shown = []
            for value in action[key]:
                target = target_of(value)
                shown.append(urlsplit(value).hostname or value if target.kind == "http" else value)
            actions.append(["forward to", ", ".join(shown)])
    return described, actions
