"""The one error type users see: a message that names what is wrong and how to fix it."""


class UserError(Exception):
    """Bad input the user can fix; the runner prints its message on one line and exits with code 2."""
