"""The study charts (plotly): HTML that opens offline, and PNG (kaleido with a browser, else matplotlib: nas._png).

1. MACs vs predicted latency per device, coloured by attention type: same MACs, very different latency
   (the paper's Figure 1 message), with the front and the named variants on it;
2. the Pareto front, predicted latency vs the accuracy side: every front config with the error bars of its
   intervals, extrapolated configs (outside a predictor's training domain) drawn hollow, the named variants as
   diamonds coloured by their status;
3. knob importances per objective.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nas._html import write_html, write_pngs
from nas._layout import PlotArea, annotate, honest_log_axes, place_labels
from search_spaces import config_knob_name

from ._objectives import ACCURACY_DEVICE
from ._phase import phase_word
from ._results import StudyResults

MACS_VS_LATENCY, PARETO, IMPORTANCE = "macs_vs_latency", "pareto_front", "importance"
_W, _H = 1400, 760
# Fixed colours per attention kind, so that every chart of every study reads the same.
_ATTENTION_COLOURS = {
    "lowtention": "#1f77b4", "mhsa": "#d62728", "relu_linear": "#2ca02c", "conv only": "#7f7f7f",
    "lowtention + mhsa": "#9467bd", "lowtention + relu_linear": "#17becf", "mhsa + relu_linear": "#bcbd22",
}
_MIXED = ["#8c564b", "#e377c2", "#ff7f0e", "#393b79", "#637939"]
_STATUS_COLOURS = {"on the front": "#2ca02c", "within uncertainty": "#1f77b4", "dominated": "#ff7f0e",
                   "over budget": "#d62728", "not evaluated": "#7f7f7f"}
_FRONT = "#111111"
_IMPORTANCE_TOP = 15


def _time_objectives(res: StudyResults) -> list[dict[str, Any]]:
    return [o for o in res.objectives if o.get("device") and o.get("device") != ACCURACY_DEVICE] or res.objectives[1:]


def _axis_title(o: dict[str, Any]) -> str:
    units = {"latency_ms": "predicted latency (ms)", "throughput_img_s": "predicted throughput (img/s)",
             "fps": "predicted fps", "top1_pct": "predicted ImageNet top-1 (%)", "params": "parameters (M)",
             "macs": "MACs (M)"}
    return units.get(o.get("metric") or "", o.get("label") or o["key"])


def _scale(o: dict[str, Any]) -> float:
    return 1e-6 if o.get("metric") in ("params", "macs") else 1.0


def _budget_of(res: StudyResults, o: dict[str, Any]) -> tuple[float, str] | None:
    """(the objective's budget in its own unit, the line's label), or None without a budget."""
    c = res.budget_on(o["key"])
    if c is None:
        return None
    if o.get("metric") == "latency_ms":
        return c.limit, f"budget {c.limit:g} ms"
    return 1000.0 / c.limit, f"budget {1000.0 / c.limit:g} img/s"


def _colours(labels: Sequence[str]) -> dict[str, str]:
    out, mixed = {}, iter(_MIXED * 4)
    for lab in labels:
        out[lab] = _ATTENTION_COLOURS.get(lab) or next(mixed)
    return out


def _hover(df: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Hover data: the id (what `export --pick` takes), the front rank when the row has one, the named variant."""
    cols = ["hash", "named", "attention", "macs", "params", "resolution"]
    data = df[cols].assign(hash=df["hash"].str[:12], macs=df["macs"] / 1e6, params=df["params"] / 1e6)
    if "rank" in df:
        data["named"] = [f"front #{int(r)} {n}".strip() if pd.notna(r) else n for r, n in zip(df["rank"], df["named"])]
    tmpl = ("id <b>%{customdata[0]}</b> %{customdata[1]}<br>%{customdata[2]}, %{customdata[5]} px<br>"
            "MACs %{customdata[3]:.0f} M, params %{customdata[4]:.2f} M<br>x %{x:.4g}, y %{y:.4g}<extra></extra>")
    return data.to_numpy(), tmpl


def _study_title(what: str, res: StudyResults) -> str:
    # The phase the predicted latencies are in (search --phase) belongs to every chart of them.
    return f"{what} — study {res.name}, phase {phase_word(res.settings)}"


def _titled(fig: go.Figure, title: str, subtitle: str) -> go.Figure:
    fig.update_layout(
        title={"text": f"{title}<br><sup>{subtitle}</sup>", "x": 0.01, "xanchor": "left"},
        template="plotly_white", width=None, height=_H, margin={"l": 70, "r": 30, "t": 110, "b": 70},
        legend={"orientation": "h", "yanchor": "top", "y": -0.09, "x": 0, "font": {"size": 12}},
        font={"size": 13}, hoverlabel={"font_size": 12},
    )
    return fig


def _named_rows(res: StudyResults) -> pd.DataFrame:
    t = res.table
    return t[t["named"] != ""]


def macs_vs_latency(res: StudyResults) -> go.Figure:
    objs = _time_objectives(res)
    t = res.table
    fig = make_subplots(rows=1, cols=max(1, len(objs)), subplot_titles=[o.get("device") or o["key"] for o in objs],
                        horizontal_spacing=0.08)
    labels = list(t["attention"].value_counts().index) if len(t) else []
    colour = _colours(labels)
    front_hashes = set(res.front["hash"])
    named = _named_rows(res)
    for j, o in enumerate(objs, start=1):
        for lab in labels:
            d = t[t["attention"] == lab]
            cd, tmpl = _hover(d)
            fig.add_trace(go.Scatter(
                x=d["macs"] / 1e6, y=d[o["key"]], mode="markers", name=f"{lab} ({len(d)})", legendgroup=lab,
                showlegend=j == 1, marker={"size": 6, "color": colour[lab], "opacity": 0.55, "line": {"width": 0}},
                customdata=cd, hovertemplate=tmpl), row=1, col=j)
        f = t[t["hash"].isin(front_hashes)]
        if len(f):
            cd, tmpl = _hover(f)
            fig.add_trace(go.Scatter(
                x=f["macs"] / 1e6, y=f[o["key"]], mode="markers", name=f"Pareto front ({len(f)})", legendgroup="front",
                showlegend=j == 1, marker={"size": 11, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": _FRONT}},
                customdata=cd, hovertemplate=tmpl), row=1, col=j)
        if len(named):
            cd, tmpl = _hover(named)
            fig.add_trace(go.Scatter(
                x=named["macs"] / 1e6, y=named[o["key"]], mode="markers", name="named variants",
                legendgroup="named", showlegend=j == 1,
                marker={"size": 12, "symbol": "diamond", "color": "#ffd400", "line": {"width": 1.5, "color": "#000"}},
                customdata=cd, hovertemplate=tmpl), row=1, col=j)
            _place_named(fig, t["macs"] / 1e6, t[o["key"]], named["macs"] / 1e6, named[o["key"]], named["named"], j,
                         len(objs))
        budget = _budget_of(res, o)
        if budget is not None:
            fig.add_hline(y=budget[0], line={"dash": "dash", "color": "#d62728", "width": 1.5}, row=1, col=j,
                          annotation_text=budget[1], annotation_position="top left", annotation_font={"color": "#d62728"})
        fig.update_xaxes(title_text="MACs (M)", row=1, col=j)
        fig.update_yaxes(title_text=_axis_title(o), row=1, col=j)
    return _titled(fig, _study_title("MACs vs predicted latency", res),
                   f"{len(t)} architectures from {res.n_trials} trials, coloured by attention type: "
                   "configs with the same MACs run at very different speeds")


_LABELLED_FRONT = 8  # up to this many front rows, each is labelled with its id on the Pareto chart
_DENSE_FRONT = 30  # above this many front rows, interval bars are drawn faint so that the front stays readable


def _error_bars(d: pd.DataFrame, key: str, scale: float = 1.0, faint: bool = False) -> dict[str, Any] | None:
    """Plotly error bars from a table's interval columns (None when every interval is a point); ``faint`` for
    dense fronts, where dark bars would merge into one band."""
    if f"{key}_lo" not in d or not len(d):
        return None
    up = (d[f"{key}_hi"] - d[key]).to_numpy(dtype=float) * scale
    down = (d[key] - d[f"{key}_lo"]).to_numpy(dtype=float) * scale
    if not (up > 0).any() and not (down > 0).any():
        return None
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "thickness": 1 if not faint else 0.6,
            "width": 0, "color": "rgba(17,17,17,0.35)" if not faint else "rgba(17,17,17,0.12)"}


def _extrapolated(d: pd.DataFrame) -> pd.Series:
    return d["ood"].apply(bool) if "ood" in d else pd.Series(False, index=d.index)


def _place_named(fig: go.Figure, all_x, all_y, xs, ys, names, col: int, ncols: int, lo_hi=None) -> None:
    """Label the named variants with annotations placed clear of every point and other label (nas._layout), with a
    leader line: text drawn with its marker can hide under the front's markers. Fixes the subplot's axis ranges so
    that the placement in pixels holds."""
    ax_, ay_ = np.asarray(all_x, dtype=float), np.asarray(all_y, dtype=float)
    ex = [np.asarray(v, dtype=float) for v in (lo_hi or ())]
    xx = np.concatenate([ax_, *(ex[:2] if ex else [])])
    yy = np.concatenate([ay_, *(ex[2:] if ex else [])])
    xx, yy = xx[np.isfinite(xx)], yy[np.isfinite(yy)]
    if not len(xx) or not len(yy):
        return
    pad = lambda lo, hi: (lo - 0.05 * (hi - lo or 1), hi + 0.05 * (hi - lo or 1))  # noqa: E731
    xr, yr = pad(xx.min(), xx.max()), pad(yy.min(), yy.max())
    fig.update_xaxes(range=list(xr), row=1, col=col)
    fig.update_yaxes(range=list(yr), row=1, col=col)
    width = (_W - 100) * (1 - 0.08 * (ncols - 1)) / ncols  # _titled's margins, make_subplots' spacing
    area = PlotArea(xr, yr, width, _H - 180)
    texts = [str(n).replace(",", "=") for n in names]
    placed = place_labels(area, list(xs), list(ys), texts, (ax_, ay_), font_px=13, marker_px=12)
    suffix = "" if col == 1 else str(col)
    annotate(fig, area, list(xs), list(ys), placed, font_px=13, marker_px=12, xref=f"x{suffix}", yref=f"y{suffix}")


def _verified(fig: go.Figure, res: StudyResults, o: dict[str, Any], acc: dict[str, Any], ys: float,
              verified: dict[str, Any] | None, col: int) -> None:
    """The front configs measured by --verify: the measured value beside the prediction, joined by a line."""
    if not verified or verified.get("objective") != o["key"]:
        return
    by_hash = res.table.set_index("hash")
    pts = [(r["hash"], r["predicted"], r["measured"]) for r in verified.get("rows", [])
           if r.get("measured") is not None and r.get("hash") in by_hash.index]
    if not pts:
        return
    acc_v = [float(by_hash.loc[h, acc["key"]]) * ys for h, _, _ in pts]
    lx, ly = [], []
    for (_, p, m), a in zip(pts, acc_v):
        lx += [p, m, None]
        ly += [a, a, None]
    fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", line={"color": "#d62728", "width": 1}, hoverinfo="skip",
                             showlegend=False, legendgroup="verified"), row=1, col=col)
    fig.add_trace(go.Scatter(
        x=[m for _, _, m in pts], y=acc_v, mode="markers", name=f"measured here (--verify, {len(pts)})",
        legendgroup="verified", showlegend=col == 1, text=[h[:12] for h, _, _ in pts],
        marker={"size": 9, "symbol": "x", "color": "#d62728"},
        hovertemplate="id <b>%{text}</b><br>measured %{x:.4g}<extra>--verify</extra>"), row=1, col=col)


def pareto_front(res: StudyResults, verified: dict[str, Any] | None = None) -> go.Figure:
    objs = _time_objectives(res)
    acc = res.objectives[0]
    t = res.table
    ys = _scale(acc)
    fig = make_subplots(rows=1, cols=max(1, len(objs)), subplot_titles=[o.get("device") or o["key"] for o in objs],
                        horizontal_spacing=0.08)
    status = {d["name"]: d["status"] for d in res.named_status()}
    named = _named_rows(res)
    for j, o in enumerate(objs, start=1):
        for ok, name, style in ((True, "feasible", {"color": "#9ecae1"}), (False, "over budget / limits", {"color": "#fcbba1"})):
            d = t[t["feasible"] == ok]
            if len(d):
                cd, tmpl = _hover(d)
                fig.add_trace(go.Scatter(
                    x=d[o["key"]], y=d[acc["key"]] * ys, mode="markers", name=f"{name} ({len(d)})", legendgroup=name,
                    showlegend=j == 1, marker={"size": 5, "opacity": 0.6, **style}, customdata=cd, hovertemplate=tmpl),
                    row=1, col=j)
        f = res.front
        if len(f):
            f = f.sort_values(o["key"])
            cd, tmpl = _hover(f)
            # With one device the front is a staircase; with more it is a projection, drawn as points only.
            mode = "lines+markers" if len(res.objectives) == 2 else "markers"
            ext = _extrapolated(f).to_numpy()
            fig.add_trace(go.Scatter(
                x=f[o["key"]], y=f[acc["key"]] * ys, mode=mode, name=f"Pareto front ({len(f)})", legendgroup="front",
                showlegend=j == 1, line={"shape": "hv" if o["direction"] == "minimize" else "vh", "color": _FRONT, "width": 1.5},
                # Extrapolated configs hollow: their predictions rest on no data like them.
                marker={"size": 8, "color": np.where(ext, "rgba(0,0,0,0)", _FRONT), "line": {"width": 1.5, "color": _FRONT},
                        "symbol": np.where(ext, "circle-open", "circle")},
                error_x=_error_bars(f, o["key"], faint=len(f) > _DENSE_FRONT),
                error_y=_error_bars(f, acc["key"], ys, faint=len(f) > _DENSE_FRONT),
                customdata=cd, hovertemplate=tmpl), row=1, col=j)
            if ext.any():
                fig.add_trace(go.Scatter(
                    x=[None], y=[None], mode="markers", name=f"extrapolated: outside a predictor's data ({int(ext.sum())})",
                    legendgroup="extrapolated", showlegend=j == 1,
                    marker={"size": 8, "symbol": "circle-open", "color": _FRONT}), row=1, col=j)
        for st, colour in _STATUS_COLOURS.items():
            d = named[named["named"].apply(lambda n: any(status.get(x) == st for x in n.split(",")))]
            if not len(d):
                continue
            cd, tmpl = _hover(d)
            ext = _extrapolated(d).to_numpy()
            fig.add_trace(go.Scatter(
                x=d[o["key"]], y=d[acc["key"]] * ys, mode="markers", name=f"named: {st}", legendgroup=f"named {st}",
                showlegend=j == 1,
                marker={"size": 13, "symbol": np.where(ext, "diamond-open", "diamond"), "color": colour,
                        "line": {"width": 1.5, "color": "#000"}},
                error_x=_error_bars(d, o["key"]), error_y=_error_bars(d, acc["key"], ys),
                customdata=cd, hovertemplate=tmpl), row=1, col=j)
        _verified(fig, res, o, acc, ys, verified, j)
        # Labelled: the named variants, and on a small front every config by its id (what `export --pick` takes);
        # a larger front names its ids on hover.
        ids = res.front[res.front["named"] == ""] if len(res.front) <= _LABELLED_FRONT else res.front.iloc[:0]
        labelled = pd.concat([named.assign(_label=named["named"]), ids.assign(_label=ids["hash"].str[:12])])
        if len(labelled):
            # The range holds every point and the intervals drawn (front and named), not every trial's interval.
            bars = pd.concat([res.front, named])
            _place_named(fig, t[o["key"]], t[acc["key"]] * ys, labelled[o["key"]], labelled[acc["key"]] * ys,
                         labelled["_label"], j, len(objs),
                         lo_hi=(bars[f"{o['key']}_lo"], bars[f"{o['key']}_hi"], bars[f"{acc['key']}_lo"] * ys,
                                bars[f"{acc['key']}_hi"] * ys))
        budget = _budget_of(res, o)
        if budget is not None:
            fig.add_vline(x=budget[0], line={"dash": "dash", "color": "#d62728", "width": 1.5}, row=1, col=j,
                          annotation_text=budget[1], annotation_position="top right", annotation_font={"color": "#d62728"})
        fig.update_xaxes(title_text=_axis_title(o), row=1, col=j)
        fig.update_yaxes(title_text=_axis_title(acc), row=1, col=j)
    sub = (f"{len(res.front)} configs on the front out of {len(t)} architectures"
           if res.any_feasible else f"no config meets the constraints ({len(t)} architectures)")
    if res.confidence:
        sub += f"; bars: {res.confidence:.0%} prediction intervals" + (
            "; the front is chosen on their pessimistic ends" if res.risk == "bound" else "")
    return _titled(fig, _study_title("Pareto front", res), sub)


def importances(res: StudyResults) -> tuple[go.Figure | None, str | None]:
    """Knob importances per objective (Optuna's default evaluator, PED-ANOVA: which knobs separate the best
    trials from the rest). Returns (figure, note)."""
    import optuna

    trials = res.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(trials) < 20:
        return None, f"importance chart skipped: {len(trials)} trials, at least 20 needed"
    fig = make_subplots(rows=1, cols=len(res.objectives), subplot_titles=[o["key"] for o in res.objectives],
                        horizontal_spacing=0.12)
    for j, o in enumerate(res.objectives, start=1):
        sign = -1.0 if o["direction"] == "maximize" else 1.0  # the evaluator ranks knobs for low target values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(res.study, target=lambda t, i=j - 1, s=sign: s * t.values[i])
        items = list(imp.items())[:_IMPORTANCE_TOP][::-1]
        # Named as in a config file (depths[2], not the search's flat depth2): what a user edits.
        fig.add_trace(go.Bar(x=[v for _, v in items], y=[config_knob_name(k) for k, _ in items], orientation="h",
                             showlegend=False,
                             marker={"color": "#1f77b4"}, hovertemplate="%{y}: %{x:.3f}<extra></extra>"), row=1, col=j)
        fig.update_xaxes(title_text="importance", row=1, col=j)
    fig = _titled(fig, _study_title("Knob importances", res),
                  f"per objective, top {_IMPORTANCE_TOP} of the knobs: how strongly each knob separates the best "
                  f"trials from the rest (Optuna PED-ANOVA over {len(trials)} trials)")
    fig.update_layout(height=max(_H, 28 * _IMPORTANCE_TOP + 200))
    return fig, None


def figures(res: StudyResults, verified: dict[str, Any] | None = None) -> tuple[dict[str, go.Figure], list[str]]:
    figs, notes = {}, []
    if len(res.table) and _time_objectives(res):
        figs[MACS_VS_LATENCY] = macs_vs_latency(res)
        figs[PARETO] = pareto_front(res, verified)
    fig, note = importances(res)
    if fig is not None:
        figs[IMPORTANCE] = fig
    if note:
        notes.append(note)
    return figs, notes


def write_figures(figs: dict[str, go.Figure], folder: pathlib.Path, png: bool = True) -> tuple[list[str], list[str]]:
    """Each figure as HTML (plotly.js once per folder, offline: nas._html), and PNG when a browser is there."""
    folder = pathlib.Path(folder)
    paths, notes = [], []
    for name, fig in figs.items():
        write_html(fig, folder / f"{name}.html",
                   {"responsive": True, "toImageButtonOptions": {"format": "png", "width": fig.layout.width or _W,
                                                                 "height": fig.layout.height or _H}})
        paths.append(str(folder / f"{name}.html"))
    if not png:
        notes.append("PNG charts skipped (--no-png)")
    elif figs:
        written, note = write_pngs(list(figs.values()), [folder / f"{name}.png" for name in figs], width=_W,
                                   heights=[f.layout.height or _H for f in figs.values()])
        paths += [str(p) for p in written]
        notes += [note] if note else []
    return paths, notes


def _read_verified(folder: pathlib.Path) -> dict[str, Any] | None:
    """verify.json of the study's folder (the last --verify), or None; a damaged one is ignored (it is a chart)."""
    import json

    from lowformer_common import read_at_most

    path = pathlib.Path(folder) / "verify.json"
    if not path.is_file():
        return None
    try:
        raw = read_at_most(path, 8 << 20)
        data = json.loads(raw) if len(raw) <= 8 << 20 else None
    except Exception:  # noqa: BLE001 (unreadable or not JSON: the chart is drawn without it)
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) else None


def write_charts(res: StudyResults, folder: pathlib.Path, png: bool = True) -> tuple[list[str], list[str]]:
    figs, notes = figures(res, _read_verified(folder))
    paths, more = write_figures(figs, folder, png=png)
    return paths, notes + more


_MIN_TAU_ROWS = 6
# plot measured has a fixed size, so that its labels can be placed in pixels (nas._layout.place_labels).
_MEASURED_MARGIN = {"l": 80, "r": 40, "t": 110, "b": 130}
_LABEL_PX, _MARKER_PX = 12, 8


def measured_figure(df: pd.DataFrame, device: str, metric: str) -> go.Figure:
    """MACs vs measured value on one device, one colour per architecture family (straight from the store),
    log-log: the models span two orders of magnitude of both. The B/E variants are labelled once, at their own
    resolution, each label placed clear of the other labels and points with a leader line to its point; every
    other point names its model on hover. The subtitle says how well MACs rank the models here (Kendall τ per
    family), the number the paper's Figure 1 argues about."""
    import plotly.express as px
    from scipy.stats import kendalltau

    from search_spaces import VARIANTS

    own_res = {n: v.config.resolution for n, v in VARIANTS.items() if v.series in ("B", "E")}
    fig = go.Figure()
    d = df.dropna(subset=["macs", "value"])
    d = d[(d["macs"] > 0) & (d["value"] > 0)]
    palette = iter(px.colors.qualitative.Dark24 + px.colors.qualitative.Light24)
    taus, labelled, labels = [], set(), []
    for fam, g in sorted(d.groupby("family"), key=lambda kv: (kv[0] != "LowFormer", -len(kv[1]), kv[0])):
        own = fam == "LowFormer"
        source = g["source"] if "source" in g else pd.Series([""] * len(g), index=g.index)
        for name, res, x, y in zip(g["name"], g["resolution"] if "resolution" in g else [None] * len(g), g["macs"], g["value"]):
            if own and name in own_res and name not in labelled and (res is None or res == own_res[name]):
                labelled.add(name)
                labels.append((x / 1e6, y, name))
        if len(g) >= _MIN_TAU_ROWS and g["macs"].nunique() > 1:  # smaller families: hover, not headline
            taus.append(f"{fam} {kendalltau(g['macs'], g['value']).statistic:.2f} ({len(g)})")
        fig.add_trace(go.Scatter(
            x=g["macs"] / 1e6, y=g["value"], mode="markers", name=f"{fam} ({len(g)})",
            marker={"size": _MARKER_PX, "opacity": 0.75, "color": next(palette), "symbol": "diamond" if own else "circle",
                    "line": {"width": 0.5, "color": "#333"} if own else {"width": 0}},
            customdata=np.stack([g["name"].fillna("").to_numpy(), source.fillna("").astype(str).to_numpy()], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> ({fam})<br>MACs %{{x:.0f}} M<br>%{{y:.4g}}<br>%{{customdata[1]}}"
                           "<extra></extra>")))
    units = {"latency_ms": "measured latency (ms)", "throughput_img_s": "measured throughput (img/s)"}
    fig.update_xaxes(title_text="MACs (M, log scale)", type="log")
    fig.update_yaxes(title_text=f"{units.get(metric, metric)}, log scale", type="log")
    what = {"latency_ms": "latency", "throughput_img_s": "throughput"}.get(metric, metric)
    if d["family"].nunique() > 1 and len(d) >= _MIN_TAU_ROWS:
        taus.insert(0, f"all {kendalltau(d['macs'], d['value']).statistic:.2f} ({len(d)})")
    rank = (f"Kendall τ of MACs vs {what}: " + ", ".join(taus) + " (|τ| = 1: MACs order the models exactly)") if taus else ""
    # Two subtitle lines: the figure has a fixed width, and one long line would be cut off.
    fig = _titled(fig, f"MACs vs measured {what} on {device}",
                  f"{len(d)} measurements from the store, one colour per architecture family." + (
                      f"</sup><br><sup>{rank}" if rank else ""))
    m = _MEASURED_MARGIN
    fig.update_layout(width=_W, height=_H, autosize=False, margin={**m, "autoexpand": False},
                      legend={"y": -0.16, "yanchor": "top"})
    honest_log_axes(fig, pad_decades=0.08)
    if labels and len(d):
        xs, ys, names = zip(*labels)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name="named variants", text=names, hovertemplate="<b>%{text}</b><extra></extra>",
            marker={"size": _MARKER_PX + 3, "symbol": "diamond", "color": "#ffd400", "line": {"width": 1.2, "color": "#000"}}))
        area = PlotArea(tuple(fig.layout.xaxis.range), tuple(fig.layout.yaxis.range), _W - m["l"] - m["r"],
                        _H - m["t"] - m["b"], x_log=True, y_log=True)
        placed = place_labels(area, xs, ys, names, (d["macs"] / 1e6, d["value"]), font_px=_LABEL_PX, marker_px=_MARKER_PX)
        annotate(fig, area, xs, ys, placed, font_px=_LABEL_PX, marker_px=_MARKER_PX)
    return fig
