"""The identity service's errors: an ``errcode`` of the Matrix specification, a
sentence, and the HTTP status (400 unless said otherwise)."""

from __future__ import annotations

from postern.errors import InvalidInput

INVALID_EMAIL = "M_INVALID_EMAIL"
EMAIL_SEND_ERROR = "M_EMAIL_SEND_ERROR"
NO_VALID_SESSION = "M_NO_VALID_SESSION"
SESSION_NOT_VALIDATED = "M_SESSION_NOT_VALIDATED"
SESSION_EXPIRED = "M_SESSION_EXPIRED"
INVALID_PARAM = "M_INVALID_PARAM"
MISSING_PARAMS = "M_MISSING_PARAMS"
TOKEN_INCORRECT = "M_TOKEN_INCORRECT"
NOT_JSON = "M_NOT_JSON"
BAD_JSON = "M_BAD_JSON"
UNAUTHORIZED = "M_UNAUTHORIZED"
TERMS_NOT_SIGNED = "M_TERMS_NOT_SIGNED"
UNKNOWN = "M_UNKNOWN"
UNRECOGNIZED = "M_UNRECOGNIZED"
LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"


class MatrixError(InvalidInput):
    """A refusal in the identity service's words. It is an ``InvalidInput``, so that
    the other doors (the user API's identities) answer it as their own 400."""

    def __init__(self, errcode: str, message: str, status: int = 400):
        super().__init__(message, code=errcode)
        self.errcode = errcode
        self.status = status
