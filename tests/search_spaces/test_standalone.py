"""export --torch: the standalone module file builds the builder's network in an interpreter where lowformer-nas
is not importable (same parameters, MACs, feature maps and outputs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from search_spaces import count, get_variant, sample_config, write_torch_export

torch = pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0 && pip install -e '.[measure]'")

from search_spaces import build_model  # noqa: E402

# Runs with `python -I -S` (no PYTHONPATH, no cwd, no .pth files: an editable install of lowformer-nas is not
# importable) and torch's own site-packages folder appended.
_PROBE = r"""
import json, sys
sys.path.append(sys.argv.pop(1))
sys.path.insert(0, sys.argv[1])
try:
    import search_spaces  # noqa: F401
    sys.exit("lowformer-nas is importable: the test proves nothing")
except ModuleNotFoundError:
    pass
import torch
from torch.utils.flop_counter import FlopCounterMode
from lowformer_model import build
cfg = json.load(open(sys.argv[1] + "/config.json"))
model = build(cfg).eval()
model.load_state_dict(torch.load(sys.argv[2], weights_only=True))
x = torch.load(sys.argv[3], weights_only=True)
with torch.no_grad():
    with FlopCounterMode(display=False) as fc:
        logits = model(x)
    feats = model.forward_features(x)
torch.save({"logits": logits, **feats}, sys.argv[4])
print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "macs": fc.get_total_flops() // 2,
                  "shapes": {k: list(v.shape) for k, v in feats.items()}}))
"""


def torch_site() -> str:
    """The folder torch is installed in (site-packages), for an interpreter started without site."""
    import pathlib

    return str(pathlib.Path(torch.__file__).resolve().parents[1])


@pytest.mark.parametrize("cfg", [get_variant("B1").config, get_variant("E2").config,
                                 sample_config(7).with_(resolution=64), get_variant("B1-unfused").config.with_(resolution=96)],
                         ids=["B1", "E2", "sampled", "B1-unfused"])
def test_standalone_module_matches_the_builder(tmp_path, cfg):
    folder = tmp_path / "pick"
    paths = write_torch_export(cfg, folder, "x")
    assert sorted(p.name for p in paths) == ["TRAINING.md", "config.json", "lowformer_model.py"]
    ref = build_model(cfg).eval()
    torch.manual_seed(0)
    for p in ref.parameters():  # non-trivial weights (the init zeroes some gammas)
        p.data.normal_(0, 0.05)
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    x = torch.randn(1, 3, cfg.resolution, cfg.resolution)
    torch.save(x, tmp_path / "x.pt")
    (tmp_path / "probe.py").write_text(_PROBE)
    r = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "probe.py"), torch_site(), str(folder), str(tmp_path / "w.pt"),
                        str(tmp_path / "x.pt"), str(tmp_path / "out.pt")], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    c = count(cfg)
    assert got["params"] == c.params == sum(p.numel() for p in ref.parameters())
    assert got["macs"] == c.macs
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        feats = ref.forward_features(x)
        logits = ref(x)
    assert got["shapes"] == {k: list(v.shape) for k, v in feats.items()}
    for k, v in feats.items():
        torch.testing.assert_close(out[k], v)
    torch.testing.assert_close(out["logits"], logits)


def test_recipe_states_what_is_known_and_not(tmp_path):
    write_torch_export(get_variant("E2").config, tmp_path / "e2", "E2")
    text = (tmp_path / "e2" / "TRAINING.md").read_text()
    assert "drop_path=0.1, drop_path_skip=1" in text and "Not stated" in text and "epochs" in text
    searched = sample_config(3)
    write_torch_export(searched, tmp_path / "s")
    assert "not stated for a searched config" in (tmp_path / "s" / "TRAINING.md").read_text()
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["hash"] == searched.hash


def test_a_target_that_is_not_empty_is_refused_untouched(tmp_path):
    from lowformer_common import UserError

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        write_torch_export(get_variant("B0").config, tmp_path / "t")
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["mine.txt"]
