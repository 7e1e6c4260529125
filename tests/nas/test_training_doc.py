"""docs/training.md's "Train the pick": the export command and the training snippet run as written, the snippet
in a fresh interpreter where lowformer-nas is not importable."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0 && pip install -e '.[measure]'")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _snippet() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- training-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/training.md lost its marked training snippet"
    return m.group(1)


def test_the_training_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    from nas.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["export", "B1", "--torch", "my-pick"]) == 0  # the doc's first command
    (tmp_path / "snippet.py").write_text(_snippet())
    # -I -S: no PYTHONPATH and no .pth files (an editable install of lowformer-nas is not importable); torch's
    # site-packages folder is appended by hand, the snippet then runs unchanged.
    site = str(pathlib.Path(torch.__file__).resolve().parents[1])
    wrapper = ("import sys, runpy\nsys.path.append(sys.argv[1])\ntry:\n    import search_spaces\n    sys.exit('lowformer-nas "
               "is importable')\nexcept ModuleNotFoundError:\n    pass\nsys.path.insert(0, '')\nsys.argv = ['snippet.py']\n"
               "runpy.run_path('snippet.py', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", wrapper, site], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "step 1: loss" in r.stdout and "'stage_final': (1, 256, 7, 7)" in r.stdout


def test_export_pick_by_id_into_torch(tmp_path, monkeypatch, capsys):
    """The doc's second command: a pick named by its id; a taken folder is one line, exit 2."""
    import json

    from nas.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOWFORMER_NAS_HOME", str(tmp_path / "home"))
    assert main(["search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "40", "--seed", "0",
                 "--study", "s", "--quiet", "--no-png"]) == 0
    front = json.loads((tmp_path / "home" / "runs" / "s" / "front.json").read_text())["front"]
    ident = front[-1]["id"]
    capsys.readouterr()
    assert main(["export", "--study", "s", "--pick", ident, "--torch", "p", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["id"] == ident and out["rank"] == len(front) and (tmp_path / "p" / "lowformer_model.py").is_file()
    assert main(["export", "--study", "s", "--pick", ident, "--torch", "p"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
