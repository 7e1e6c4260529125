"""The paper's published measurements as a shipped dataset of the store.

``python -m measured._paper /work/shared/data`` reads ``paper_measurements.csv`` and ``device_specs.csv``
and (re)writes, under ``measured/data/``:

- ``paper_devices.json``: the measuring devices (spec and protocol from ``device_specs.csv``) and the
  pseudo-devices that hold accuracy, task and architecture figures;
- ``paper_measurements.csv.gz``: every row of the paper's table in the import format of :mod:`measured._io`;
- ``datasets.json``: the manifest a :class:`Store` seeds itself from (other datasets listed there are kept);
- ``PAPER.md``: the mapping rules and what this run mapped where.

Every number comes from those files through the csv module; none is typed here.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
import pathlib
import re
import sys
from typing import Any

from lowformer_common import atomic_write, utc_now
from search_spaces import PAPER_ALIASES, VARIANTS, Variant

from ._io import arch_columns, read_rows, records_frame, write_table
from ._records import ACCURACY_DEVICE, PHASE_FIELDS, Architecture, Device, Measurement, RecordError, out_of_space_hash
from ._store import DATA_DIR, MANIFEST, StoreError

PAPER_CSV = "paper_measurements.csv"
SPECS_CSV = "device_specs.csv"
DEVICES_FILE = "paper_devices.json"
ROWS_FILE = "paper_measurements.csv.gz"
REPORT_FILE = "PAPER.md"
DATASET_NAME = "paper"
VERSIONS = json.dumps({"source": "IJCV 2026 paper"}, sort_keys=True)

# Device classes of the paper's machines (device_specs.csv names them, it does not classify them).
KINDS = {"a40_gpu": "gpu", "titan_rtx_gpu": "gpu", "jetson_tx2": "edge", "rpi5_arm_cpu": "edge", "iphone13": "mobile"}
UNSPECIFIED_GPU = "gpu_unspecified"
# Figures of an architecture rather than of a run: params, MACs and shares of them.
COUNTS_DEVICE = "paper_counts"
COUNT_METRICS = ("macs_m", "params_m", "relative_macs", "mlp_share_of_macs_pct")
# Metrics timed under the device protocol (its warm-up and iteration counts apply).
TIMING_METRICS = ("latency_ms", "throughput_img_s", "relative_latency", "relative_throughput", "pct_change_vs_mhsa",
                  "avg_pct_change_vs_mhsa", "pct_change_vs_baseline")
# LowFormer rows that are not the classifier: a backbone timed alone at 512 px, task models.
BACKBONE_NOTES = ("RetinaNet detection backbone", "Semantic FPN segmentation backbone")
TASK_NOTE_PREFIXES = ("RetinaNet detection (", "Semantic FPN segmentation (", "GPR1200 retrieval")
_PLAIN_TABLE9 = "MLP=yes, original depth=yes, attention=yes"
_ASSUMED = " (assumed)"
_NOT_STATED = {"", "not stated", "unknown", "n/a"}


def dataset_slug(name: str) -> str:
    """``ImageNet-1K`` -> ``imagenet1k`` (= ``ACCURACY_DEVICE``), ``COCO 2017`` -> ``coco2017``,
    ``Oxford-IIIT Pets`` -> ``oxford_iiit_pets``."""
    s = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return re.sub(r"(?<=[a-z])_(?=\d)", "", s)


def _value(text: str | None) -> Any:
    """A spec/protocol cell: int, float, text, or None where the paper does not state it."""
    if text is None or text.strip().lower() in _NOT_STATED:
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _line(where: str) -> int:
    return int(where.split()[1])


# ---------------------------------------------------------------------------------------------- devices


def spec_devices(specs_csv: pathlib.Path) -> dict[str, Device]:
    """The five measuring devices with the spec table and the measuring protocol of the paper."""
    _, rows = read_rows(specs_csv)
    devices = {}
    for _, r in rows:
        did = r["device_id"]
        if did not in KINDS:
            raise StoreError(f"{specs_csv}: no device class for {did!r}; add it to KINDS in {__name__}", "device_id")
        spec = {k: _value(r.get(k)) for k in ("execution_memory_gb", "memory_type", "number_of_cores",
                                               "memory_bandwidth_gb_s", "tensor_tflops", "max_power_w")}
        protocol = {
            "label": r.get("protocol_device_label"),
            "metric": _value(r.get("protocol_metric")),
            "batch": _value(r.get("batch_size")),
            "iterations": _value(r.get("iterations")),
            "framework": _value(r.get("framework")),
            "warmup": _value(r.get("warmup_iterations")),
            "statistic": _value(r.get("timing_statistic")),
            "source": r.get("source"),
            "notes": r.get("notes"),
        }
        devices[did] = Device(did, r["device_name"], KINDS[did], {}, spec, protocol, "paper").validate()
    return devices


def _pseudo_device(did: str, name: str, kind: str, note: str) -> Device:
    return Device(did, name, kind, {}, {}, {"notes": note}, "paper").validate()


# ---------------------------------------------------------------------------------------------- architectures


_BY_PAPER = {(v.paper_model, v.paper_note): v for v in VARIANTS.values() if v.paper_model}
_PAPER_MODELS = {v.paper_model for v in VARIANTS.values() if v.paper_model}


def lowformer_variant(model: str, note: str) -> Variant | None:
    """The search-space variant a LowFormer classifier row measures; None for backbone/task/other rows."""
    if (model, note) in PAPER_ALIASES:
        return VARIANTS[PAPER_ALIASES[(model, note)]]
    if note == "" or (note.startswith(f"Table 9 name '{model}':") and note.endswith(_PLAIN_TABLE9)):
        return _BY_PAPER.get((model, None))
    return _BY_PAPER.get((model, note))


@functools.lru_cache(maxsize=None)
def _variant_arch(variant: str, res: int) -> Architecture:
    v = VARIANTS[variant]
    cfg = v.config if res == v.config.resolution else v.config.with_(resolution=res)
    return Architecture.from_config(cfg, v.name if res == v.config.resolution else f"{v.name}@{res}")


def _arch(row: dict[str, Any], where: str) -> tuple[Architecture, str]:
    """(architecture, how it was mapped) for one paper row; params/macs of out-of-space ones filled later."""
    family, model = row["family"], row["model"]
    note = row.get("variant_note") or ""
    res = int(row["resolution"]) if row.get("resolution") is not None else None
    if family != "LowFormer":
        return Architecture(out_of_space_hash(family, model, res), family, model, None, res, None, None, False), \
            "other family"
    v = lowformer_variant(model, note)
    if v is not None:
        if res is None:
            raise StoreError(f"{PAPER_CSV} {where}: a LowFormer classifier row without a resolution", "resolution")
        return _variant_arch(v.name, res), f"variant {v.name}"
    if model not in _PAPER_MODELS:
        name, why = model, "LowFormer model outside the search space (not a classifier variant)"
    elif note in BACKBONE_NOTES:
        name, why = f"{model} backbone", "backbone timed alone (no classifier head) for detection/segmentation"
    elif note.startswith(TASK_NOTE_PREFIXES):
        name, why = f"{model} ({note})", "task model built on the backbone, not the classifier"
    else:
        raise StoreError(f"{PAPER_CSV} {where}: no mapping for LowFormer row {model!r} with note {note!r}; "
                         f"extend {__name__}.lowformer_variant", "variant_note")
    return Architecture(out_of_space_hash("LowFormer", name, res), "LowFormer", name, None, res, None, None, False), why


# ---------------------------------------------------------------------------------------------- rows


class Conversion:
    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.records: list[dict[str, Any]] = []
        self.mapping: collections.Counter = collections.Counter()  # (family/variant, how) -> rows
        self.out_of_space_lowformer: dict[str, tuple[str, int]] = {}  # name -> (why, rows)
        self.flagged: list[tuple[int, str, str, str, str]] = []
        self.count_conflicts: list[str] = []
        self.timestamp = ""


def convert(data_dir: str | pathlib.Path, timestamp: str | None = None) -> Conversion:
    """The paper's rows as import records, with the devices they need and what was mapped where."""
    data_dir = pathlib.Path(data_dir)
    conv = Conversion()
    conv.timestamp = timestamp or utc_now()
    specs = spec_devices(data_dir / SPECS_CSV)
    _, rows = read_rows(data_dir / PAPER_CSV)
    mapped = [(where, row, *_arch(row, where)) for where, row in rows]
    archs = _architectures(mapped, conv)
    ids: set[str] = set()
    for where, row, arch, how in mapped:
        arch = archs[arch.config_hash]
        device = _device_for(row, where, specs, conv)
        m = _measurement(where, row, arch, device, conv.timestamp, ids)
        conv.records.append({**m.to_dict(), **arch_columns(arch)})
        _tally(conv, row, where, arch, how, device, m)
    return conv


def _architectures(mapped: list[tuple[str, dict[str, Any], Architecture, str]], conv: Conversion) -> dict[str, Architecture]:
    """One architecture per hash; out-of-space ones take params/MACs from the paper's own rows of them."""
    counts: dict[tuple[str, str], list[tuple[int, str]]] = collections.defaultdict(list)
    for where, row, arch, _ in mapped:
        if not arch.in_space and row["metric"] in ("params_m", "macs_m"):
            counts[(arch.config_hash, row["metric"])].append((_line(where), row["value"]))
    archs: dict[str, Architecture] = {}
    for _, _, arch, _ in mapped:
        if arch.config_hash in archs or arch.in_space:
            archs.setdefault(arch.config_hash, arch)
            continue
        for metric, field in (("params_m", "params"), ("macs_m", "macs")):
            found = counts.get((arch.config_hash, metric))
            if found:
                values = {float(v) for _, v in found}
                if len(values) > 1:
                    conv.count_conflicts.append(f"{arch.family} {arch.name}: {metric} {sorted(values)} "
                                                f"(lines {[n for n, _ in found]}); the first is used")
                setattr(arch, field, round(float(found[0][1]) * 1e6))
        archs[arch.config_hash] = arch.validate()
    return archs


def _measurement(where: str, row: dict[str, Any], arch: Architecture, device: Device, timestamp: str,
                 ids: set[str]) -> Measurement:
    """One paper row as a measurement with its provenance; its id is the sha256 of the row's cells."""
    protocol = device.protocol if device.kind != "dataset" else {}
    metric = row["metric"]
    framework = row.get("framework") or ""
    notes = [row.get("variant_note"), row.get("notes")]
    if row.get("dataset"):
        notes.append(f"dataset: {row['dataset']}")
    if framework.endswith(_ASSUMED):
        notes.append(f"framework {framework!r} as printed")
        framework = framework[: -len(_ASSUMED)]
    timed = metric in TIMING_METRICS and device.kind != "dataset"
    raw = "\x1f".join(str(row.get(k) or "") for k in row)
    mid = "paper-" + hashlib.sha256(raw.encode()).hexdigest()[:40]
    if mid in ids:
        raise StoreError(f"{PAPER_CSV} {where}: repeats an earlier row", "row")
    ids.add(mid)
    mapping = {
        "id": mid,
        "device_id": device.device_id,
        "config_hash": arch.config_hash,
        "metric": metric,
        "value": row["value"],
        "backend": framework or "n/a",
        "batch": row.get("batch_size") or protocol.get("batch") or 1,
        "resolution": row.get("resolution"),
        "precision": "unknown",  # the paper does not state fp32/fp16 per device
        "warmup": protocol.get("warmup") if timed else None,
        "n": protocol.get("iterations") if timed else None,
        "source": "paper",
        "source_ref": f"{row['source']}; {PAPER_CSV} line {_line(where)}",
        "versions": VERSIONS,
        "timestamp": timestamp,
        "notes": " | ".join(n for n in notes if n) or None,
        "flag": row.get("flag"),
    }
    try:
        return Measurement.from_mapping(mapping)
    except RecordError as e:
        raise StoreError(f"{PAPER_CSV} {where}: {e}") from None


def _tally(conv: Conversion, row: dict[str, Any], where: str, arch: Architecture, how: str, device: Device,
           m: Measurement) -> None:
    """What PAPER.md reports: rows per mapping, LowFormer rows left out of the space, flagged rows."""
    conv.mapping[(row["family"], how, arch.name if arch.in_space else "")] += 1
    if row["family"] == "LowFormer" and not arch.in_space:
        why, n = conv.out_of_space_lowformer.get(arch.name, (how, 0))
        conv.out_of_space_lowformer[arch.name] = (why, n + 1)
    if m.flag:
        conv.flagged.append((_line(where), row["model"], device.device_id, m.metric, m.flag))


def _device_for(row: dict[str, Any], where: str, specs: dict[str, Device], conv: Conversion) -> Device:
    label = row["device"]
    if label in specs:
        did, make = label, lambda: specs[label]
    elif label == UNSPECIFIED_GPU:
        did = label
        make = lambda: _pseudo_device(  # noqa: E731
            label, "GPU not named by the paper", "gpu",
            "Table 15 tracking fps: the column only says 'GPU' (could be the TITAN RTX of the latency protocol)")
    elif label == "n/a" and row.get("dataset"):
        did = dataset_slug(row["dataset"])
        make = lambda: _pseudo_device(  # noqa: E731
            did, row["dataset"], "dataset", "accuracy and task results of the paper on this dataset")
    elif label == "n/a" and row["metric"] in COUNT_METRICS:
        did = COUNTS_DEVICE
        make = lambda: _pseudo_device(  # noqa: E731
            did, "Architecture figures printed in the paper", "dataset",
            "params, MACs and MAC shares as printed (MACs truncated, not rounded); not measured on a machine")
    else:
        raise StoreError(f"{PAPER_CSV} {where}: no device for {label!r} with metric {row['metric']!r}", "device")
    if did not in conv.devices:
        conv.devices[did] = make()
    return conv.devices[did]


# ---------------------------------------------------------------------------------------------- outputs


def write(conv: Conversion, out_dir: str | pathlib.Path = DATA_DIR) -> None:
    out_dir = pathlib.Path(out_dir)
    devices = sorted(conv.devices.values(), key=lambda d: (d.kind == "dataset", d.device_id))
    atomic_write(out_dir / DEVICES_FILE, json.dumps([d.__dict__ for d in devices], indent=2, sort_keys=True) + "\n")
    # The paper's rows were never paired or phased: the file keeps the columns it always had.
    write_table(records_frame(conv.records).drop(columns=list(PHASE_FIELDS)), out_dir / ROWS_FILE)
    _update_manifest(out_dir / MANIFEST.name)
    atomic_write(out_dir / REPORT_FILE, report(conv))


def _update_manifest(path: pathlib.Path) -> None:
    entries = json.loads(path.read_text(encoding="utf-8"))["datasets"] if path.exists() else []
    entry = {
        "name": DATASET_NAME,
        "file": ROWS_FILE,
        "devices": DEVICES_FILE,
        "source": "paper",
        "description": "measurements, accuracy and task results printed in the IJCV 2026 LowFormer paper "
                       "(generated by python -m measured._paper; see PAPER.md)",
    }
    others = [e for e in entries if e.get("name") != DATASET_NAME]
    # The paper's devices come first: later datasets may refer to them.
    atomic_write(path, json.dumps({"datasets": [entry] + others}, indent=2) + "\n")


def report(conv: Conversion) -> str:
    by_dev_metric = collections.Counter((r["device_id"], r["metric"]) for r in conv.records)
    kinds = {d.device_id: d.kind for d in conv.devices.values()}
    lines = [
        "# The paper's measurements in the store",
        "",
        "Generated by `python -m measured._paper /work/shared/data` (do not edit by hand) from",
        f"`{PAPER_CSV}` and `{SPECS_CSV}` (see that directory's README). A store opened with `seed=True`",
        f"imports `{ROWS_FILE}` with the devices of `{DEVICES_FILE}` (listed in `datasets.json`).",
        "",
        "## Mapping rules",
        "",
        "- **Devices.** `a40_gpu`, `titan_rtx_gpu` (kind gpu), `jetson_tx2`, `rpi5_arm_cpu` (kind edge: a",
        "  board, timed on its CPU) and `iphone13` (mobile) carry the spec table (`spec`) and measuring protocol",
        "  (`protocol`: metric, batch, iterations, framework, warmup, statistic) of `device_specs.csv`; unstated",
        "  values are `null`. `gpu_unspecified` (Table 15 tracking fps) stays a device of kind gpu.",
        "- **Pseudo-devices** (kind dataset): accuracy and task results go to their dataset (`ImageNet-1K` ->",
        f"  `{ACCURACY_DEVICE}`, `COCO 2017` -> `coco2017`, ...); params, MACs, relative MACs and the MLP share",
        f"  of MACs (device `n/a`, no dataset) go to `{COUNTS_DEVICE}`, metric names unchanged (`params_m`, ...).",
        "- **LowFormer rows** map to search-space configs through the variant table (`Variant.paper_model`,",
        "  `paper_note`, `PAPER_ALIASES` for the ablation baseline); Table 9 rows with MLP, original depth and",
        "  attention are the plain variant. The row's resolution is used (B3 at 384 px is B3's config at 384,",
        "  named `B3@384`; the high-res-attention ablation at 1024 px is `B1-highres-att@1024`).",
        "  In-space architectures get params/MACs from `search_spaces.count`, not from the paper.",
        "- **Not the classifier, so outside the space** (`in_space` false, family LowFormer): backbones timed",
        "  alone at 512 px for detection/segmentation (one architecture `<model> backbone` per model: the",
        "  RetinaNet and Semantic FPN tables print the same backbone timings), task models (`<model> (<note>)`:",
        "  RetinaNet/Semantic FPN results, GPR1200 retrieval embeddings, whose throughput equals Table 7's) and",
        "  `LowFormer-Track`.",
        "- **Other families and toy models**: out-of-space architectures with id",
        "  `out_of_space_hash(family, model, resolution)`; params/MACs from the paper's `params_m`/`macs_m` rows of",
        "  the same architecture as integers `round(M * 1e6)` (the paper's own rounding: its MACs are truncated",
        "  to whole millions). The toy models' graphs are defined elsewhere; their ids stay stable. The Jetson",
        "  TX2 idle-power row (model `(idle)`, family `n/a`, Table 16 caption) is kept the same way, as an",
        "  out-of-space entry named `(idle)`: it measures the board, not a network.",
        "- **Every row is kept** with its metric name (relative and percentage figures too) and its `flag`",
        "  (anomaly/suspect): `Store.measurements()` leaves flagged rows out unless `include_flagged=True`.",
        "- **Provenance per row**: `source` paper, `source_ref` `<table>; paper_measurements.csv line N`,",
        "  `backend` the framework (`n/a` where none is printed; a framework printed as `(assumed)` is stored",
        "  without the suffix and the note says so), `batch` from the row (else the device protocol, else 1),",
        "  `precision` unknown (not stated), `threads` empty, `warmup`/`n` from the protocol where stated and",
        "  only for timed metrics, `notes` = variant note, notes and dataset, `versions`",
        f"  `{VERSIONS}`. `timestamp` is when the import script ran (`{conv.timestamp}`): the paper does",
        "  not date its runs. Ids are `paper-` + sha256 of the row's cells, so regenerating the file does not",
        "  duplicate rows in an existing store.",
        "",
        f"## Rows per device and metric ({len(conv.records)} rows)",
        "",
        "| device | kind | metric | rows |",
        "|---|---|---|---:|",
    ]
    for (d, m), n in sorted(by_dev_metric.items()):
        lines.append(f"| {d} | {kinds[d]} | {m} | {n} |")
    lines += ["", "## LowFormer rows mapped to search-space variants", "", "| variant (architecture name) | rows |",
              "|---|---:|"]
    for (fam, how, name), n in sorted(conv.mapping.items()):
        if how.startswith("variant"):
            lines.append(f"| {name} | {n} |")
    lines += ["", "## LowFormer rows left out of the space", "", "| architecture | rows | why |", "|---|---:|---|"]
    for name, (why, n) in sorted(conv.out_of_space_lowformer.items()):
        lines.append(f"| {name} | {n} | {why} |")
    others = collections.Counter()
    for (fam, how, _), n in conv.mapping.items():
        if fam != "LowFormer":
            others[fam] += n
    n_arch = len({(r["family"], r["name"], r["resolution"]) for r in conv.records if r["family"] != "LowFormer"})
    lines += ["", f"## Other families ({sum(others.values())} rows, {n_arch} out-of-space architectures)", "",
              "| family | rows |", "|---|---:|"]
    for fam, n in sorted(others.items()):
        lines.append(f"| {fam} | {n} |")
    lines += ["", "## Flagged rows (never train on them)", "", "| line | model | device | metric | flag |",
              "|---:|---|---|---|---|"]
    for line, model, dev, metric, flag in conv.flagged:
        lines.append(f"| {line} | {model} | {dev} | {metric} | {flag} |")
    if conv.count_conflicts:
        lines += ["", "## Conflicting params/MACs rows", ""] + [f"- {c}" for c in conv.count_conflicts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m measured._paper", description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", help=f"directory with {PAPER_CSV} and {SPECS_CSV}")
    p.add_argument("--out", default=str(DATA_DIR), help="where to write (default: the package's data directory)")
    p.add_argument("--timestamp", help="ISO time stored on every row (default: now)")
    args = p.parse_args(argv)
    try:
        conv = convert(args.data_dir, args.timestamp)
        write(conv, args.out)
    except StoreError as e:
        print(f"measured._paper: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(conv.records)} rows, {len(conv.devices)} devices -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
