"""lowformer_common: errors on one bounded line, the home directory, the clock, one version."""

import datetime as dt
import pathlib

import pytest

import nas
from lowformer_common import HOME_ENV, MAX_ERROR_CHARS, UserError, __version__, home_dir, one_line, short, utc_now


def test_short_is_one_bounded_line():
    assert short("a\n  b\tc") == "a b c"
    long = short("x" * 10_000)
    assert len(long) == MAX_ERROR_CHARS and long.endswith("…")


def test_one_line_takes_the_first_line_of_a_driver_error():
    class DriverError(Exception):
        pass

    e = Exception("wrapper")
    e.orig = DriverError("connection refused\nDETAIL: more")
    assert one_line(e) == "connection refused"
    assert one_line(ValueError("")) == "ValueError"


def test_user_error_is_an_exception_with_its_message():
    with pytest.raises(UserError, match="^field: bad$"):
        raise UserError("field: bad")


def test_home_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert home_dir() == tmp_path
    monkeypatch.delenv(HOME_ENV)
    assert home_dir() == pathlib.Path.home() / ".lowformer-nas"


def test_utc_now_is_iso_utc_to_the_second():
    t = dt.datetime.fromisoformat(utc_now())
    assert t.utcoffset() == dt.timedelta(0) and t.microsecond == 0


def test_one_version_everywhere():
    import importlib.metadata

    assert nas.__version__ == __version__ == importlib.metadata.version("lowformer-nas")
