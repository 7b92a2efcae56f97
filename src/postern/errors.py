"""Domain errors. Services raise these; each door maps them to its own answer
(an HTTP status and ``{"error", "code"}``, an SMTP or IMAP response code)."""

from __future__ import annotations


class DomainError(Exception):
    code = "Error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field = field


class InvalidInput(DomainError):
    code = "InputValidationError"


class NotPermitted(InvalidInput):
    """An operation WildDuck refuses on a protected folder (INBOX, special-use)."""

    code = "NotPermitted"


class NotFound(DomainError):
    code = "NotFound"


class Conflict(DomainError):
    code = "Conflict"


class Forbidden(DomainError):
    """The request is understood but not allowed (a special folder, the main address)."""

    code = "Forbidden"


class AuthFailed(DomainError):
    code = "AuthFailed"


class OverQuota(DomainError):
    code = "OverQuotaError"


class TooLarge(DomainError):
    code = "MessageTooLarge"


class RateLimited(DomainError):
    """Too many attempts; ``retry_after`` is in seconds. HTTP answers 429, the mail
    doors their own temporary-failure codes."""

    code = "RateLimitedError"

    def __init__(self, retry_after: int, message: str = "Rate limit exceeded"):
        super().__init__(message)
        self.retry_after = max(1, retry_after)
