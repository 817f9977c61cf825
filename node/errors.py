"""Errors a user can fix. The CLIs print them as one line, without a traceback."""


class UserError(Exception):
    """Bad input or set-up: the message says what was wrong and what to do."""
