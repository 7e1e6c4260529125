"""Test doubles shared across the test packages."""


class QuietMonitor:
    """A load monitor that always reports a quiet machine: timings on an injected clock stay exact on a busy host."""

    other_pct = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
