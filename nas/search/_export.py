"""``lowformer-nas export --study NAME --pick ID``: a config of a study's front as JSON (and ONNX, and a
standalone PyTorch module with ``--torch DIR``).

A pick is named by its **id**, the short config hash (``front.json``'s ``id``), which stays with the config when
the study is resumed; a number K (the K-th row of the front as it is now) is kept as a convenience."""

from __future__ import annotations

import pathlib
import re

from lowformer_common import MEASURE_EXTRA_HINT, missing_module, read_at_most, strict_dumps, strict_loads
from search_spaces import LowFormerConfig, write_config_json

from ._report import FRONT_JSON
from ._runs import find_study_dir, searched_line
from ._errors import SearchError
from ._storage import check_study_name

_MAX_FRONT_BYTES = 64 << 20  # a front.json is a few hundred KB
ID_LEN = 12  # characters of the config hash that name a pick (the hash column of every table)
_MIN_ID = 4


def pick_id(config_hash: str) -> str:
    """The stable id of a front row: the short config hash."""
    return config_hash[:ID_LEN]


def _load_front(study: str, runs_dir: str | None) -> tuple[pathlib.Path, list[dict]]:
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
    return folder, front


def _find(front: list[dict], pick: str | int, study: str) -> tuple[int, dict]:
    text = str(pick).strip()
    if re.fullmatch(r"#?[0-9]{1,6}", text):  # a rank (hex ids of 4+ digits that are all decimal: see below)
        k = int(text.lstrip("#"))
        by_id = [e for e in front if e["hash"].startswith(text)] if len(text) >= _MIN_ID else []
        if not by_id:
            if not 1 <= k <= len(front):
                raise SearchError("pick", f"must be between 1 and {len(front)}, the size of the front, or a config id "
                                          f"(got {text})")
            return k, front[k - 1]
        text = text.lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{%d,64}" % _MIN_ID, text):
        raise SearchError("pick", f"must be a rank 1-{len(front)} or a config id (the hash column, at least {_MIN_ID} "
                                  f"hex digits; got {text[:70]!r})")
    hits = [(i, e) for i, e in enumerate(front, start=1) if e["hash"].startswith(text.lower())]
    if len(hits) > 1:
        raise SearchError("pick", f"id {text} matches {len(hits)} front configs ("
                                  f"{', '.join(pick_id(e['hash']) for _, e in hits[:5])}); give more digits")
    if not hits:
        ids = ", ".join(pick_id(e["hash"]) for e in front[:5]) + (", ..." if len(front) > 5 else "")
        raise SearchError("pick", f"config {text} is not (or no longer: a resumed study's front changes) on the front "
                                  f"of study {study!r}; its {len(front)} front ids are in report.md/front.csv ({ids})")
    return hits[0]


def front_entry(study: str, pick: str | int, runs_dir: str | None = None) -> dict:
    """The front entry named by ``pick`` (an id, the short config hash, or a 1-based rank) in the study's
    ``front.json`` (in ``runs_dir``, else ./runs or ``$LOWFORMER_NAS_HOME/runs``)."""
    return _find(_load_front(study, runs_dir)[1], pick, study)[1]


def _with_interval(key: str, value, entry: dict) -> str:
    iv = (entry.get("intervals") or {}).get(key)
    text = f"{key} {value:.4g}"
    if isinstance(iv, list) and len(iv) == 2 and iv[0] != iv[1]:
        text += f" [{iv[0]:.4g}, {iv[1]:.4g}]"
    return text + (" (measured)" if (entry.get("measured") or {}).get(key) else "")


def export_pick(args) -> int:
    if getattr(args, "model", None) is not None or getattr(args, "config", None) is not None:
        raise SearchError("study", "give a model/--config or --study NAME --pick ID, not both")
    folder, front = _load_front(args.study, args.runs_dir)
    rank, entry = _find(front, args.pick, args.study)
    cfg = LowFormerConfig.from_dict(entry["config"])
    if entry["hash"] not in (cfg.hash, cfg.legacy_hash):  # a front written before identity 2 has the knobs' hash
        raise SearchError("front.json", f"config {pick_id(entry['hash'])} does not match its hash; the file was edited")
    ident = pick_id(cfg.hash)
    name = f"{args.study}-{ident}"
    torch_dir = getattr(args, "torch", None)
    as_json = getattr(args, "json", False)
    _check_torch_target(torch_dir)
    json_out = args.json_out or str(folder / f"pick-{ident}.json")
    preds = ", ".join(_with_interval(k, v, entry) for k, v in entry.get("predictions", {}).items())
    write_config_json(json_out, cfg, name)
    log = (lambda s: None) if as_json else print
    log(f"wrote {json_out}  (id {ident}, front #{rank} now: {preds})")
    written = {"study": args.study, "id": ident, "rank": rank, "hash": cfg.hash, "predictions": entry.get("predictions"),
               "intervals": entry.get("intervals"), "measured": entry.get("measured"), "config_json": json_out}
    if torch_dir:
        written["torch"] = [str(p) for p in _write_torch(cfg, torch_dir, name, {"study": args.study, "rank_when_exported": rank,
                                                                                  "predictions": entry.get("predictions")}, log)]
    onnx_out = args.onnx or (None if torch_dir and not args.onnx else str(pathlib.Path(json_out).with_suffix(".onnx")))
    if onnx_out:
        if missing_module("torch"):
            if args.onnx:
                raise SearchError("onnx", f"ONNX export needs torch; {MEASURE_EXTRA_HINT}")
            log("note: no ONNX written (it needs torch: pip install 'lowformer-nas[measure]')")
        else:
            from search_spaces import export_onnx

            export_onnx(cfg, onnx_out, exporter=args.exporter)
            log(f"wrote {onnx_out}  ({name}, {cfg.resolution} px, id {ident})")
            written["onnx"] = onnx_out
    if as_json:
        print(strict_dumps(written, indent=1))
    return 0


def _check_torch_target(torch_dir: str | None) -> None:
    if torch_dir is None:
        return
    p = pathlib.Path(torch_dir)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise SearchError("torch", f"{p} exists and is not an empty folder; give a new folder")


def _write_torch(cfg: LowFormerConfig, folder: str, name: str, extra: dict, log) -> list[pathlib.Path]:
    from search_spaces import write_torch_export

    paths = write_torch_export(cfg, folder, name, extra)
    log(f"wrote {folder}/  ({', '.join(p.name for p in paths)}: a PyTorch module needing only torch, its config, "
        "the training recipe; docs/training.md shows a training loop)")
    return paths
