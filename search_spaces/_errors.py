"""The one exception family the CLI turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Bad input from a user (a file, a flag, a name). ``str(err)`` is one line that says what is allowed."""
