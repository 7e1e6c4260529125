"""lowformer_common files (and search_spaces.write_config_json): whole files or nothing."""

import json
import os

import pytest

from lowformer_common import (
    DuplicateKeyError,
    NotRegularFileError,
    atomic_write,
    read_at_most,
    sha256_file,
    strict_dumps,
    strict_loads,
    write_json,
)
from search_spaces import get_variant, write_config_json


def test_atomic_write_replaces_whole_files(tmp_path):
    p = tmp_path / "d" / "f.txt"
    atomic_write(p, "one")
    atomic_write(p, "two")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert p.read_text() == "two" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(x.name for x in (tmp_path / "d").iterdir()) == ["f.txt"]


def test_json_helpers(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": 1}
    cfg = get_variant("B1").config
    write_config_json(tmp_path / "c.json", cfg, "B1")
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["name"] == "B1" and d["resolution"] == cfg.resolution
    assert len(sha256_file(tmp_path / "c.json")) == 64


def test_read_at_most_bounds_files_that_stat_cannot(tmp_path):
    (tmp_path / "small").write_bytes(b"abc")
    assert read_at_most(tmp_path / "small", 10) == b"abc"
    # /dev/zero (size 0 to stat, endless to read) and a FIFO (whose open blocks until a writer comes): not regular
    # files, refused without reading or waiting.
    os.mkfifo(tmp_path / "fifo")
    for path in ("/dev/zero", tmp_path / "fifo", tmp_path):
        with pytest.raises(NotRegularFileError, match="not a regular file"):
            read_at_most(path, 10)


def test_strict_json_both_ways():
    with pytest.raises(DuplicateKeyError, match="key 'resolution' given twice"):
        strict_loads('{"resolution": 224, "resolution": 256}')
    for text in ('{"a": NaN}', '[Infinity]', "[" * 200_000):
        with pytest.raises(ValueError):
            strict_loads(text)
    assert strict_loads(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    with pytest.raises(ValueError, match=r"^rows\[1\]\.interval\[1\] is not a finite number"):
        strict_dumps({"rows": [{}, {"interval": [0.0, float("inf")]}]})
    assert strict_dumps({"a": 1.5}) == '{"a": 1.5}'
