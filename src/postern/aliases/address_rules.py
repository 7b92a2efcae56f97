"""Which addresses a user may hold as aliases: the one set of rules that making an
alias by hand, at random, by import and by a catch-all share.

* On the operator's shared alias domains an alias is a prefix (``check_prefix``)
  and a random suffix (the forms ``alias/options`` signs: ``.word123``, ``.x7k2q``),
  or a random alias (``two_words123``, a uuid). An import takes only those forms,
  unless the operator's policy (``alias_import_any_local_part``) takes any local part
  that ``check_prefix`` takes.
* Never on a shared domain: a reserved local part (RFC 2142's role names, the
  addresses certificate authorities mail for domain control, postern's own system
  senders, the reverse-alias and bounce namespaces, and the operator's
  ``reserved_local_parts``), with or without a ``+tag``.
* On a user's own (custom) domain: any local part that ``check_prefix`` takes.
"""

from __future__ import annotations

import re
from email.utils import parseaddr

from postern.accounts.addressing import NormalisedAddress
from postern.aliases.bounces import is_verp_local
from postern.aliases.contacts import is_reverse_alias_local
from postern.aliases.usable_domains import UsableDomain
from postern.config import Settings
from postern.errors import InvalidInput

# RFC 2142 (mailbox names for common services, roles and functions), the names
# certificate authorities use for domain control (CA/B Forum BR 3.2.2.4.4), and the
# senders of automatic mail.
BUILT_IN_RESERVED = frozenset(
    {
        "postmaster",
        "abuse",
        "hostmaster",
        "webmaster",
        "admin",
        "administrator",
        "root",
        "security",
        "noc",
        "info",
        "support",
        "sales",
        "marketing",
        "no-reply",
        "noreply",
        "mailer-daemon",
        "mailerdaemon",
        "www",
        "uucp",
        "usenet",
        "news",
        "ftp",
        "daemon",
        "nobody",
        "bounce",
        "bounces",
    }
)
_WORD_SUFFIX = r"[a-z]+[0-9]{2,3}"  # words.word_suffix without its dot
_STRING_SUFFIX = r"[a-z0-9]{5}"  # words.string_suffix without its dot
_SUFFIXED = re.compile(rf"([0-9a-z_.-]+)\.(?:{_WORD_SUFFIX}|{_STRING_SUFFIX})")
_RANDOM_WORDS = re.compile(r"[a-z]+_[a-z]+[0-9]{2,3}")  # words.word_local
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")  # words.uuid_local


def reserved_local_parts(settings: Settings) -> frozenset[str]:
    """The built-in list, postern's own system sender and the operator's additions."""
    system = parseaddr(settings.resolved_system_mail_from)[1].rpartition("@")[0].lower()
    return BUILT_IN_RESERVED | {system} | set(settings.reserved_local_parts)


def is_reserved(local: str, settings: Settings) -> bool:
    local = local.lower()
    base = local.split("+", 1)[0]
    if is_reverse_alias_local(local) or is_verp_local(local):
        return True
    reserved = reserved_local_parts(settings)
    return local in reserved or base in reserved


def _valid_local(local: str) -> bool:
    # What hand creation takes as a prefix (aliases.service.check_prefix).
    return (
        bool(re.fullmatch(r"[0-9a-z_.-]+", local))
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and len(local) <= 64
    )


def offered_form(local: str) -> bool:
    """Whether ``local`` has a form postern offers on a shared domain: a prefix and a
    random suffix, or a random alias."""
    if _RANDOM_WORDS.fullmatch(local) or _UUID.fullmatch(local):
        return True
    match = _SUFFIXED.fullmatch(local)
    return match is not None and _valid_local(match.group(1)) and len(match.group(1)) <= 40


def check_alias_address(
    address: NormalisedAddress,
    domain: UsableDomain,
    settings: Settings,
    *,
    imported: bool,
    field: str = "alias",
) -> None:
    """InvalidInput (naming ``field``) when ``address`` may not become an alias of a
    user on ``domain``."""
    local = address.local
    if not _valid_local(local):
        raise InvalidInput(
            f"{address.display}: an alias can only contain letters, digits, dots, hyphens and underscores, "
            "and cannot start or end with a dot",
            field=field,
        )
    if domain.is_custom:
        return
    if is_reserved(local, settings):
        raise InvalidInput(f"{address.display} is reserved: nobody can make it an alias", field=field)
    if imported and not settings.alias_import_any_local_part and not offered_form(local):
        raise InvalidInput(
            f"{address.display}: on {domain.domain} an alias is a prefix and a random suffix, as alias/options offers",
            field=field,
        )
