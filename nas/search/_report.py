"""A study's outputs in runs/<study>/: front.csv, front.json, report.md and the charts, each written atomically."""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any, Sequence

import optuna
import pandas as pd

from lowformer_common import atomic_write

from ._charts import write_charts
from ._hints import next_steps
from ._phase import phase_line
from ._results import StudyResults

FRONT_CSV, FRONT_JSON, REPORT_MD = "front.csv", "front.json", "report.md"
_REPORT_FRONT_ROWS = 30


def _entry(r: pd.Series, res: StudyResults) -> dict[str, Any]:
    d = {
        "rank": int(r["rank"]) if "rank" in r and pd.notna(r.get("rank")) else None,
        "id": r["hash"][:12],  # the stable name of a pick (export --pick ID), unlike its rank
        "hash": r["hash"],
        "named": r["named"] or None,
        "trial": int(r["trial"]),
        "macs": int(r["macs"]),
        "params": int(r["params"]),
        "predictions": {k: float(r[k]) for k in res.keys},
        "intervals": res.intervals(r),
        "measured": {k: k in r["measured"] for k in res.keys},
        "optimised": {k: float(r[f"opt:{k}"]) for k in res.keys},
        "in_domain": {k: k not in r["ood"] for k in res.predictor_keys()},
        "evidence": evidence(r, res),
        "constraints": {c.key: {"value": float(r[f"q:{c.key}"]), "limit": c.limit, "unit": c.unit, "bound": c.bound,
                                "violation": float(r[f"c:{c.key}"])} for c in res.constraints},
        "feasible": bool(r["feasible"]),
        "config": r["config"],
    }
    return d


def front_json(res: StudyResults) -> dict[str, Any]:
    return {
        "study": res.name,
        "trials": res.n_trials,
        "architectures": len(res.table),
        "objectives": res.objectives,
        "risk": res.risk,
        "confidence": res.confidence,
        "round": res.round,
        # The device phase the time objectives were predicted in (search --phase), per objective with its fit.
        "phase": {"phase": res.settings.get("phase") or "canonical", "objectives": res.settings.get("phases") or {}},
        "constraints": [c.to_dict() for c in res.constraints],
        "any_feasible": res.any_feasible,
        "front": [_entry(r, res) for _, r in res.front.iterrows()],
        # Never an empty answer: without a feasible config, the nearest misses.
        "closest": [] if res.any_feasible else [_entry(r, res) for _, r in res.closest().iterrows()],
        "named": res.named_status(),
    }


def front_frame(res: StudyResults) -> pd.DataFrame:
    rows = res.front if res.any_feasible else res.closest().assign(rank=None)
    out = pd.DataFrame({"rank": rows["rank"], "id": rows["hash"].str[:12], "hash": rows["hash"], "named": rows["named"]})
    for k in res.keys:
        out[k], out[f"{k}_lo"], out[f"{k}_hi"] = rows[k], rows[f"{k}_lo"], rows[f"{k}_hi"]
    out["measured"] = rows["measured"].apply(";".join)
    out["macs"], out["params"] = rows["macs"], rows["params"]
    for c in res.constraints:
        out[f"{c.key} ({c.unit})"] = rows[f"q:{c.key}"]
    out["violation"], out["feasible"] = rows["violation"], rows["feasible"]
    out["out_of_domain"] = rows["ood"].apply(";".join)
    out["evidence"] = [";".join(f"{k}={v}" for k, v in evidence(r, res).items()) for _, r in rows.iterrows()]
    out["attention"], out["resolution"] = rows["attention"], rows["resolution"]
    out["config_json"] = rows["config"].apply(lambda c: json.dumps(c, separators=(",", ":")))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"  # never 1.159e+04
    return str(v)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines)


def _config_summary(r: pd.Series) -> str:
    c = r["config"]
    return f"widths {'-'.join(map(str, c['widths']))}, depths {'-'.join(map(str, c['depths']))}, {r['attention']}"


def _extra_constraints(res: StudyResults) -> list:
    # A latency budget's quantity is the latency objective itself: only other units get a column.
    metric = {o["key"]: o.get("metric") for o in res.objectives}
    return [c for c in res.constraints if c.objective is None or metric.get(c.objective) != "latency_ms"]


_UNIT_HEADS = {"params": ("M", 1e-6), "macs": ("M", 1e-6), "latency_ms": ("ms", 1.0), "throughput_img_s": ("img/s", 1.0),
               "fps": ("fps", 1.0), "top1_pct": ("%", 1.0)}


_LABEL_MAX = 18


def short_device(device: str) -> str:
    """A device id short enough for a table column: ``x86_64-intel-r-xeon-r-processor-2c-24g-0261`` becomes
    ``x86_64-inte…-0261`` (the report lists the full id once, under Devices)."""
    return device if len(device) <= _LABEL_MAX else f"{device[:11]}…{device[-5:]}"


def _short_key(key: str) -> str:
    device, sep, metric = key.partition(":")
    return f"{short_device(device)}{sep}{metric}" if sep else key


def device_legend(res: StudyResults) -> str | None:
    """One line naming the full id of every device shown under a short label, or None when none is shortened."""
    long = [d for d in dict.fromkeys(o.get("device") for o in res.objectives) if d and short_device(d) != d]
    if not long:
        return None
    return "Devices in the tables: " + "; ".join(f"`{short_device(d)}` = `{d}`" for d in long) + "."


def _objective_columns(res: StudyResults) -> list[tuple[str, str, float]]:
    """(key, header with unit, scale) per objective: one unit per quantity in every table (params in M, ...); long
    device ids shortened (see :func:`device_legend`)."""
    out = []
    for o in res.objectives:
        unit, scale = _UNIT_HEADS.get(o.get("metric") or "", ("", 1.0))
        label = _short_key(o["key"])
        out.append((o["key"], f"{label} ({unit})" if unit else label, scale))
    return out


def _value(r: pd.Series, k: str, scale: float = 1.0) -> str:
    """A value with its interval (when it has one) and a mark when it is a stored measurement."""
    v, lo, hi = (float(r[x]) * scale for x in (k, f"{k}_lo", f"{k}_hi"))
    text = _fmt(v) if lo == hi else f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]"
    return text + (" (measured)" if k in r["measured"] else "")


def evidence(r: pd.Series, res: StudyResults) -> dict[str, str]:
    """Per objective of a row, what its number rests on: "measured" (a stored measurement of the device),
    "predicted in domain", "extrapolated" (outside the predictor's training domain) or "exact" (an analytic count)."""
    preds = set(res.predictor_keys())
    return {k: "measured" if k in r["measured"] else "extrapolated" if k in r["ood"] else
            "predicted in domain" if k in preds else "exact" for k in res.keys}


def _domain(r: pd.Series, res: StudyResults) -> str:
    ev = evidence(r, res)
    parts = []
    for what, label in (("measured", "measured"), ("predicted in domain", "in domain"), ("extrapolated", "**extrapolated**")):
        keys = [k for k, v in ev.items() if v == what]
        if keys:
            parts.append(f"{label}: {', '.join(keys)}")
    return "; ".join(parts) or "exact"


def _rows_table(res: StudyResults, rows: pd.DataFrame, with_rank: bool) -> str:
    cols = _objective_columns(res)
    sizes = [(k, f"{k} (M)") for k in ("macs", "params") if k not in res.keys]  # unless an objective shows them
    heads = (["#"] if with_rank else []) + ["id", "named"] + [h for _, h, _ in cols]
    heads += [{"macs": "MACs (M)", "params": "params (M)"}[k] for k, _ in sizes]
    # The domain constraint is 0 on every front row (its evidence column says more); the closest misses show it.
    extra = [c for c in _extra_constraints(res) if c.unit not in ("params", "MACs") and not (with_rank and c.key == "domain")]
    heads += [f"{c.key} ({c.unit})" for c in extra]
    heads += ["px", "architecture", "evidence (domain)"] + ([] if with_rank else ["total violation"])
    out = []
    for _, r in rows.iterrows():
        row = ([int(r["rank"])] if with_rank else []) + [f"`{r['hash'][:12]}`", r["named"] or ""]
        row += [_value(r, k, scale) for k, _, scale in cols] + [r[k] / 1e6 for k, _ in sizes]
        row += [float(r[f"q:{c.key}"]) for c in extra]
        row += [int(r["resolution"]), _config_summary(r), _domain(r, res)]
        if not with_rank:
            row.append(f"{r['violation'] * 100:+.0f}%")
        out.append(row)
    return _md_table(heads, out)


def ranking_line(res: StudyResults) -> str:
    """How the front is ordered, and how to name a pick, in a sentence or two."""
    first = res.objectives[0]
    end = ""
    if res.risk == "bound" and res.confidence:
        side = "lower" if first["direction"] == "maximize" else "upper"
        end = (f" at the {side} end of its {res.confidence:.0%} interval (risk bound), not its central value: a config "
               "with a wider interval can rank below one with a lower central prediction")
    return (f"**Ranking**: # orders the front by {first['key']} ({first['direction']}d){end}; ties by trial. # changes "
            "when the study is resumed and the front grows; the **id** (the config hash's first 12 characters) does "
            "not: `lowformer-nas export --study " + res.name + " --pick ID` (or `--pick #`, the rank as it is now).")


def risk_line(res: StudyResults) -> str:
    """How the study scored its configs, in one sentence."""
    if res.risk == "bound" and res.confidence:
        return (f"risk bound: budgets and objectives use the pessimistic end of each prediction's {res.confidence:.0%} "
                f"interval (upper end of a latency, lower end of a throughput or top-1), so a returned config is over a "
                f"budget with probability <= {(1 - res.confidence) / 2:.1%}")
    iv = f"; {res.confidence:.0%} intervals are reported, not used" if res.confidence else ""
    return f"risk mean: budgets and objectives use the central predictions (no safety margin){iv}"


def report_md(res: StudyResults, charts: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    s = res.settings
    buf = io.StringIO()
    w = lambda *a: print(*a, file=buf)  # noqa: E731
    w(f"# Search study `{res.name}`\n")
    w(_md_table(["setting", "value"], [
        ["devices", ", ".join(s.get("devices") or []) or "-"],
        ["objectives", ", ".join(f"{o['direction']} {o['key']}" for o in res.objectives)],
        ["accuracy side", s.get("objective", "-") + (" (capacity proxy, maximised)" if s.get("objective") in ("params", "macs") else "")],
        ["constraints", "; ".join(c.label for c in res.constraints) or "none"],
        ["risk", risk_line(res)],
        ["phase", phase_line(s)],
        ["extrapolation", "allowed (--extrapolate): extrapolated configs compete on their intervals"
         if s.get("extrapolate", True) else "none: every prediction stays inside its predictor's training domain"],
        ["sampler", f"{s.get('sampler')} ({'no seed' if s.get('seed') is None else 'seed ' + str(s.get('seed'))})"],
        ["trials", f"{res.n_trials} complete, {len(res.table)} distinct architectures (requested {s.get('trials')})"
                   + (f"; refinement round {res.round}" if res.round else "")],
        ["storage", s.get("storage", "-")],
        ["created", s.get("created", "-")],
        ["versions", f"lowformer-nas {s.get('lowformer_nas')}, optuna {optuna.__version__}"],
    ]))
    legend = device_legend(res)
    if legend:
        w("\n" + legend)
    preds = [o for o in res.objectives if o.get("kind") == "PredictorObjective"]
    if preds:
        share = res.in_domain_share()
        w("\n## Predictors\n")
        w(_md_table(["objective", "device", "metric", "model", "version", "in domain (all)", "in domain (front)"], [
            [o["key"], o["device"], o["metric"], o.get("model_type") or "-", o.get("version") or "-",
             _pct(share[o["key"]]["all"]), _pct(share[o["key"]]["front"])] for o in preds]))
        w("\nIn domain: the share of architectures the predictor's training data covers (its `in_domain`); "
          "predictions outside it are extrapolations, marked **extrapolated** in the tables below. Intervals: "
          + "; ".join(f"{o['key']} {'calibrated' if o.get('calibrated', True) else '**none** (point predictions)'}"
                      for o in preds) + ".")
    if res.any_feasible:
        n = len(res.front)
        w(f"\n## Pareto front ({n} configs{', first ' + str(_REPORT_FRONT_ROWS) + ' shown; all in front.csv' if n > _REPORT_FRONT_ROWS else ''})\n")
        w("Ranked by the first objective (the value the search optimised). Every config meets all constraints under its "
          "predictor" + (" at the pessimistic end of its interval" if res.risk == "bound" else "") + ". Values: central "
          "value [interval]; (measured): a stored measurement of this device, not a prediction.\n")
        w(ranking_line(res) + "\n")
        w(_rows_table(res, res.front.head(_REPORT_FRONT_ROWS), with_rank=True))
    else:
        w("\n## No feasible config\n")
        w(f"**None of the {res.n_trials} trials meets the constraints** ({'; '.join(c.label for c in res.constraints)}). "
          f"The {min(len(res.table), 10)} closest ones (smallest total relative violation):\n")
        w(_rows_table(res, res.closest(), with_rank=False))
        w("\nLoosen the budget or the limits, or search longer.")
    w("\n## Named variants\n")
    rows = []
    cols = _objective_columns(res)
    for d in res.named_status():
        vals = [_named_value(d, k, scale) for k, _, scale in cols]
        dom = "-" if "in_domain" not in d else ("in" if all(d["in_domain"].values()) else "**extrapolated**: " + ", ".join(
            k for k, ok in d["in_domain"].items() if not ok))
        rows.append([d["name"], f"`{d['hash'][:12]}`", *vals, d["status"], d["detail"], dom])
    w(_md_table(["variant", "hash"] + [h for _, h, _ in cols] + ["status", "detail", "domain"], rows))
    if charts:
        w("\n## Charts\n")
        for c in charts:
            w(f"- [{pathlib.Path(c).name}]({pathlib.Path(c).name})")
    for n in list(s.get("notes") or []) + [n for n in notes if n not in (s.get("notes") or [])]:
        w(f"\n_Note: {n}_")
    steps = next_steps(res)
    if steps:
        w("\n## Next steps\n")
        for line in steps:
            w(f"- {line}")
    return buf.getvalue()


def _named_value(d: dict, k: str, scale: float = 1.0) -> str:
    if "values" not in d:
        return "-"
    v, lo, hi = (x * scale for x in (d["values"][k], *d["intervals"][k]))
    text = _fmt(v) if lo == hi else f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]"
    return text + (" (measured)" if d["measured"][k] else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def amend_report(folder: pathlib.Path, res: StudyResults, sections: Sequence[str], done: dict | None = None) -> None:
    """Add ``sections`` (markdown, e.g. the verification and refinement tables) to the study's report.md and
    replace its next steps by ones that do not repeat ``done`` ({"verify": N, "refine": R})."""
    path = pathlib.Path(folder) / REPORT_MD
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    head = text.split("\n## Next steps\n")[0].rstrip("\n") + "\n"
    body = head + "".join("\n" + x.rstrip("\n") + "\n" for x in sections)
    steps = next_steps(res, done=done)
    if steps:
        body += "\n## Next steps\n\n" + "\n".join(f"- {line}" for line in steps) + "\n"
    atomic_write(path, body)


def write_outputs(res: StudyResults, folder: pathlib.Path, png: bool = True) -> tuple[list[str], list[str]]:
    """Write front.csv, front.json, the charts and report.md; return (paths, notes)."""
    folder = pathlib.Path(folder)
    paths = []
    atomic_write(folder / FRONT_CSV, front_frame(res).to_csv(index=False))
    atomic_write(folder / FRONT_JSON, json.dumps(front_json(res), indent=1) + "\n")
    paths += [str(folder / FRONT_CSV), str(folder / FRONT_JSON)]
    charts, notes = write_charts(res, folder, png=png)
    atomic_write(folder / REPORT_MD, report_md(res, charts, notes))
    paths += charts + [str(folder / REPORT_MD)]
    return paths, notes
