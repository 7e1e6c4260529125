"""Where a user's state lives: the store, trained predictors, drift caches."""

import os
import pathlib

HOME_ENV = "LOWFORMER_NAS_HOME"


def home_dir() -> pathlib.Path:
    """``$LOWFORMER_NAS_HOME``, else ``~/.lowformer-nas``."""
    return pathlib.Path(os.environ.get(HOME_ENV) or pathlib.Path.home() / ".lowformer-nas").expanduser()
