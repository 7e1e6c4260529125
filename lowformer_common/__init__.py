"""What every lowformer-nas package may use: the user-error family, atomic files, the home directory, the
clock and the version. It imports nothing of the project, so it sits below ``search_spaces``, ``measured``,
``predictors`` and ``nas`` (tests/test_layers.py keeps it that way)."""

from ._clock import utc_now
from ._errors import MAX_ERROR_CHARS, MAX_ERROR_LINE_CHARS, MEASURE_EXTRA_HINT, UserError, missing_module, one_line, short
from ._files import atomic_write, read_at_most, sha256_file, write_json
from ._home import HOME_ENV, home_dir
from ._version import __version__

__all__ = [
    "HOME_ENV",
    "MAX_ERROR_CHARS",
    "MAX_ERROR_LINE_CHARS",
    "MEASURE_EXTRA_HINT",
    "UserError",
    "__version__",
    "atomic_write",
    "home_dir",
    "missing_module",
    "one_line",
    "read_at_most",
    "sha256_file",
    "short",
    "utc_now",
    "write_json",
]
