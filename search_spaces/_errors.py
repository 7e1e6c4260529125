"""The one exception family the CLI turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Bad input from a user (a file, a flag, a name). ``str(err)`` is one line that says what is allowed."""


def one_line(e: BaseException) -> str:
    """The first line of an exception's text (a database driver's, say), for a one-line error message."""
    text = str(getattr(e, "orig", None) or e).strip()
    return (text.splitlines() or [type(e).__name__])[0]
