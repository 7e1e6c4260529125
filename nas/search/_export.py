"""``lowformer-nas export --study NAME --pick K``: the K-th config of a study's front as JSON (and ONNX)."""

from __future__ import annotations

import pathlib

from lowformer_common import MEASURE_EXTRA_HINT, missing_module, read_at_most, strict_loads
from search_spaces import LowFormerConfig, write_config_json

from ._report import FRONT_JSON
from ._runs import find_study_dir, searched_line
from ._storage import SearchError, check_study_name

_MAX_FRONT_BYTES = 64 << 20  # a front.json is a few hundred KB


def front_entry(study: str, pick: int, runs_dir: str | None = None) -> dict:
    """The ``pick``-th (1-based) entry of the study's ``front.json`` (in ``runs_dir``, else ./runs or
    ``$LOWFORMER_NAS_HOME/runs``)."""
    check_study_name(study)
    folder = find_study_dir(study, runs_dir, marker=FRONT_JSON)
    if folder is None:
        raise SearchError("study", f"no {FRONT_JSON} of study {study!r} in {searched_line(runs_dir)}; run "
                                   f"`lowformer-nas search --study {study}` (or `lowformer-nas plot --study {study}`) first")
    path = folder / FRONT_JSON
    try:
        raw = read_at_most(path, _MAX_FRONT_BYTES)
        if len(raw) > _MAX_FRONT_BYTES:
            raise ValueError(f"more than {_MAX_FRONT_BYTES >> 20} MiB")
        data = strict_loads(raw)
    except FileNotFoundError:
        raise SearchError("study", f"no {path}; run `lowformer-nas search --study {study}` first") from None
    except (OSError, ValueError) as e:
        raise SearchError(str(path), f"cannot read the front ({e})") from None
    front = (data.get("front") if isinstance(data, dict) else None) or []
    if not isinstance(front, list) or not all(isinstance(e, dict) for e in front):
        raise SearchError(str(path), "not a front (a list of entries); run `lowformer-nas plot --study NAME` to write it again")
    if not front:
        raise SearchError("pick", f"study {study!r} has no config that meets its constraints; its report lists the "
                                  "closest ones")
    if not isinstance(pick, int) or not 1 <= pick <= len(front):
        raise SearchError("pick", f"must be between 1 and {len(front)}, the size of the front (got {pick})")
    return front[pick - 1]


def _with_interval(key: str, value, entry: dict) -> str:
    iv = (entry.get("intervals") or {}).get(key)
    text = f"{key} {value:.4g}"
    if isinstance(iv, list) and len(iv) == 2 and iv[0] != iv[1]:
        text += f" [{iv[0]:.4g}, {iv[1]:.4g}]"
    return text + (" (measured)" if (entry.get("measured") or {}).get(key) else "")


def export_pick(args) -> int:
    if getattr(args, "model", None) is not None or getattr(args, "config", None) is not None:
        raise SearchError("study", "give a model/--config or --study NAME --pick K, not both")
    entry = front_entry(args.study, args.pick, args.runs_dir)
    cfg = LowFormerConfig.from_dict(entry["config"])
    if entry["hash"] not in (cfg.hash, cfg.legacy_hash):  # a front written before identity 2 has the knobs' hash
        raise SearchError("front.json", f"config #{args.pick} does not match its hash; the file was edited")
    name = f"{args.study}-pick{args.pick}"
    folder = find_study_dir(args.study, args.runs_dir, marker=FRONT_JSON)
    json_out = args.json_out or str(folder / f"pick{args.pick}-{cfg.short_hash}.json")
    preds = ", ".join(_with_interval(k, v, entry) for k, v in entry.get("predictions", {}).items())
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
