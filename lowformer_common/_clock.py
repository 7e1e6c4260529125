"""The one clock every record is stamped with."""

import datetime as _dt


def utc_now() -> str:
    """Now in UTC, ISO 8601 to the second (sorts as text)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
