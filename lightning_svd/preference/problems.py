"""What can be wrong with a request, each kind mapped to its HTTP status by the app."""


class InvalidInput(ValueError):
    """A malformed or out-of-range value (HTTP 400)."""


class Unauthorized(PermissionError):
    """The request names no rater this study knows: no link token, or an unknown one (HTTP 401)."""


class Forbidden(PermissionError):
    """The request lacks the secret this endpoint is guarded by, or its rater was revoked (HTTP 403)."""


class NotFound(LookupError):
    """Something the request names does not exist, or is not this rater's (HTTP 404)."""


class Conflict(ValueError):
    """The rater already answered this pair and question differently (HTTP 409)."""


class TooManyRequests(RuntimeError):
    """A rater or an address asks faster than the study allows, or holds too many pairs (HTTP 429)."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s
