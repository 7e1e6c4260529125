"""What every lowformer-nas package may use: the user-error family, atomic files, the home directory, the
clock and the version. It imports nothing of the project, so it sits below ``search_spaces``, ``measured``,
``predictors`` and ``nas`` (tests/test_layers.py keeps it that way)."""

from ._clock import utc_now
from ._errors import MAX_ERROR_CHARS, MAX_ERROR_LINE_CHARS, MEASURE_EXTRA_HINT, UserError, missing_module, one_line, short
from ._files import NotRegularFileError, atomic_write, check_regular, open_regular, read_at_most, sha256_file, write_json
from ._home import HOME_ENV, home_dir
from ._json import DuplicateKeyError, non_finite_path, strict_dumps, strict_loads
from ._version import __version__

__all__ = [
    "HOME_ENV",
    "MAX_ERROR_CHARS",
    "MAX_ERROR_LINE_CHARS",
    "MEASURE_EXTRA_HINT",
    "DuplicateKeyError",
    "NotRegularFileError",
    "UserError",
    "__version__",
    "atomic_write",
    "check_regular",
    "home_dir",
    "missing_module",
    "non_finite_path",
    "one_line",
    "open_regular",
    "read_at_most",
    "sha256_file",
    "short",
    "strict_dumps",
    "strict_loads",
    "utc_now",
    "write_json",
]
