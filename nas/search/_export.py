"""``lowformer-nas export --study NAME --pick K``: the K-th config of a study's front as JSON (and ONNX)."""

from __future__ import annotations

import json
import pathlib

from lowformer_common import MEASURE_EXTRA_HINT, missing_module
from search_spaces import LowFormerConfig, write_config_json

from ._report import FRONT_JSON
from ._storage import SearchError, study_dir


def front_entry(study: str, pick: int, runs_dir: str = "runs") -> dict:
    """The ``pick``-th (1-based) entry of ``runs/<study>/front.json``."""
    path = study_dir(runs_dir, study) / FRONT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SearchError("study", f"no {path}; run `lowformer-nas search --study {study}` "
                                   f"(or `lowformer-nas plot --study {study}`) first") from None
    except (OSError, ValueError) as e:
        raise SearchError(str(path), f"cannot read the front ({e})") from None
    front = data.get("front") or []
    if not front:
        raise SearchError("pick", f"study {study!r} has no config that meets its constraints; its report lists the "
                                  "closest ones")
    if not isinstance(pick, int) or not 1 <= pick <= len(front):
        raise SearchError("pick", f"must be between 1 and {len(front)}, the size of the front (got {pick})")
    return front[pick - 1]


def export_pick(args) -> int:
    if getattr(args, "model", None) is not None or getattr(args, "config", None) is not None:
        raise SearchError("study", "give a model/--config or --study NAME --pick K, not both")
    entry = front_entry(args.study, args.pick, args.runs_dir)
    cfg = LowFormerConfig.from_dict(entry["config"])
    if entry["hash"] not in (cfg.hash, cfg.legacy_hash):  # a front written before identity 2 has the knobs' hash
        raise SearchError("front.json", f"config #{args.pick} does not match its hash; the file was edited")
    name = f"{args.study}-pick{args.pick}"
    json_out = args.json_out or str(study_dir(args.runs_dir, args.study) / f"pick{args.pick}-{cfg.short_hash}.json")
    preds = ", ".join(f"{k} {v:.4g}" for k, v in entry.get("predictions", {}).items())
    write_config_json(json_out, cfg, name)
    print(f"wrote {json_out}  (front #{args.pick}, hash {cfg.short_hash}: {preds})")
    onnx_out = args.onnx or str(pathlib.Path(json_out).with_suffix(".onnx"))
    if missing_module("torch"):
        if args.onnx:
            raise SearchError("onnx", f"ONNX export needs torch; {MEASURE_EXTRA_HINT}")
        print("note: no ONNX written (it needs torch: pip install 'lowformer-nas[measure]')")
        return 0
    from search_spaces import export_onnx

    export_onnx(cfg, onnx_out, exporter=args.exporter)
    print(f"wrote {onnx_out}  ({name}, {cfg.resolution} px, hash {cfg.short_hash})")
    return 0
