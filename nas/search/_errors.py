"""The search's one error type: every module of the package raises it, so it lives below all of them."""

from __future__ import annotations

from lowformer_common import UserError


class SearchError(UserError):
    """A search, study or output problem. ``str(err)`` is one line: the field, then what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
