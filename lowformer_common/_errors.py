"""The one exception family the CLI turns into a one-line message and exit status 2."""

# An error line quotes what the user gave; a 6 MB list must not come back as a 6 MB line.
MAX_ERROR_CHARS = 300
# A whole error line: room for the allowed values it lists (every variant name, every device of a store).
MAX_ERROR_LINE_CHARS = 1000


class UserError(Exception):
    """Bad input from a user (a file, a flag, a name). ``str(err)`` is one line that says what is allowed.

    The line is bounded here, once for every subclass: whatever a message quotes, it stays one line of at
    most MAX_ERROR_LINE_CHARS characters.
    """

    def __str__(self) -> str:
        return short(super().__str__(), MAX_ERROR_LINE_CHARS)


# What to do when the torch-based part (building, exporting, measuring models) is not installed.
MEASURE_EXTRA_HINT = "install the measure extra: pip install 'lowformer-nas[measure]'"


def missing_module(*names: str) -> str | None:
    """The first of ``names`` that is not installed (found without importing it), else None."""
    import importlib.util

    return next((n for n in names if importlib.util.find_spec(n) is None), None)


def short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters (an ellipsis marks the cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(e: BaseException) -> str:
    """The first line of an exception's text (a database driver's, say), for a one-line error message."""
    text = str(getattr(e, "orig", None) or e).strip()
    return short((text.splitlines() or [type(e).__name__])[0])
