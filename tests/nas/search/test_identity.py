"""Studies stored before config identity 2 (trial hashes of the knobs as typed) still read: one row per network."""

from __future__ import annotations

import json

import optuna

from nas.search import DISTRIBUTIONS
from nas.search._export import export_pick
from nas.search._results import load_results
from search_spaces import config_to_knobs, count, get_variant

NARROW = get_variant("B1").config.with_(widths=(16, 32, 64, 160, 192))


def _trial(cfg, value: float):
    c = count(cfg)
    # What a search of identity 1 stored: the hash of the knobs as typed.
    return optuna.trial.create_trial(params=config_to_knobs(cfg), distributions=DISTRIBUTIONS, values=[value],
                                     user_attrs={"hash": cfg.legacy_hash, "macs": c.macs, "params": c.params})


def test_an_old_study_lists_each_network_once():
    study = optuna.create_study(directions=["minimize"])
    thresholds = (320, 384, 1024)  # one network: every stage-3/4 width < 320
    for t in thresholds:
        study.add_trial(_trial(NARROW.with_(fusion_threshold=t), 5.0))
    study.add_trial(_trial(NARROW.with_(fusion_threshold=128), 6.0))  # another network
    assert len({NARROW.with_(fusion_threshold=t).legacy_hash for t in thresholds}) == 3
    res = load_results(study, "old")
    assert len(res.table) == 2 and sorted(res.table["n"]) == [1, 3]
    assert set(res.table["hash"]) == {NARROW.with_(fusion_threshold=320).hash, NARROW.with_(fusion_threshold=128).hash}
    assert len(res.front) == 1


def test_export_accepts_a_front_written_before_identity_2(tmp_path, capsys):
    cfg = NARROW.with_(fusion_threshold=384)
    folder = tmp_path / "runs" / "old"
    folder.mkdir(parents=True)
    (folder / "front.json").write_text(json.dumps({"front": [{"hash": cfg.legacy_hash, "config": cfg.to_dict(),
                                                              "predictions": {}}]}))

    class Args:
        study, pick, runs_dir, json_out, onnx, exporter, model, config = "old", 1, str(tmp_path / "runs"), None, None, None, None, None

    Args.json_out = str(tmp_path / "pick.json")
    Args.onnx = None
    try:
        export_pick(Args)
    except Exception as e:  # only the ONNX part may need torch; the JSON is written first
        assert "onnx" in str(e).lower() or "torch" in str(e).lower()
    assert json.loads((tmp_path / "pick.json").read_text())["fusion_threshold"] == 384
