"""User errors: reported by the CLI as one line, never as a traceback."""


class UserError(Exception):
    """A mistake the user can fix (bad name, missing data, bad value); the message says how."""
