"""What can be wrong with a request, each kind mapped to its HTTP status by the app."""


class InvalidInput(ValueError):
    """A malformed or out-of-range value (HTTP 400)."""


class NotFound(LookupError):
    """Something the request names does not exist, or is not this rater's (HTTP 404)."""


class Forbidden(PermissionError):
    """The request lacks the secret this endpoint is guarded by (HTTP 403)."""


class Conflict(ValueError):
    """The rater already answered this pair and question differently (HTTP 409)."""
