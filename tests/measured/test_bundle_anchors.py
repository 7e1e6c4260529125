"""Bundles and the device's phase: the runner pairs every model with the bundle's reference, times the phase anchors
at the start, when due and at the end into <results>.anchors.csv, warns when they moved; the import stores those
sessions as the device's phase series.

Every timing here runs on fake models and an injected clock: the figures are exact on a busy machine.
"""

import csv
import hashlib
import json

import pytest

from measured import anchor_configs, anchor_hashes
from measured._bundle import RUNNER
from search_spaces import get_variant

from .test_bundle import _runner

# Each model's cost on the simulated device (ms), by name: the anchors' and B0's as on the shipped host.
COSTS = {"B0": 21.3, "B0@160": 10.0, "B1-unfused": 17.7, "B1": 30.9, "E2": 69.7, "B3": 125.7, "B2": 45.0}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(root, name, cfg, anchor_only=False):
    data = name.encode()  # the checks hash the file; the fake model never parses it
    rel = f"models/{cfg.hash[:16]}.onnx"
    (root / rel).write_bytes(data)
    e = {"hash": cfg.hash, "file": rel, "sha256": _sha(data), "input_shape": [1, 3, cfg.resolution, cfg.resolution],
         "name": name, "family": "LowFormer", "resolution": cfg.resolution, "config_json": cfg.canonical_json()}
    return dict(e, anchor_only=True) if anchor_only else e


def _bundle(root, jobs=("B2",), anchors=True, device_id="test-pi"):
    """A format-3 bundle: the jobs, the reference B0 and the anchors (anchor-only), fake model files."""
    (root / "models").mkdir(parents=True)
    models = [_entry(root, n, get_variant(n).config) for n in jobs]
    models.append(_entry(root, "B0", get_variant("B0").config, anchor_only=True))
    if anchors:
        models += [_entry(root, n, c, anchor_only=True) for n, c in anchor_configs()
                   if c.hash not in {m["hash"] for m in models}]
    manifest = {"format": 3, "name": "b", "protocol": {"warmup": 0, "runs": 6}, "models": models,
                "reference": get_variant("B0").config.hash, "device_id": device_id,
                "anchors": [{"name": n, "hash": c.hash} for n, c in anchor_configs()] if anchors else []}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


class _Device:
    """A simulated device: each run advances the clock by the model's cost times the device's slowness, which
    ``slowness(t)`` sets from the time so far (a throttle that sets in, a reference that crashes)."""

    def __init__(self, slowness=lambda t: 1.0, fail=None):
        self.t, self.slowness, self.fail = 0.0, slowness, fail

    def clock(self):
        return self.t

    def model_class(self):
        device = self

        class FakeModel:
            def __init__(self, path, shape, backend, threads, precision):
                with open(path, "rb") as f:
                    name = f.read().decode()
                self.version = "fake-1.0"

                def run():
                    if device.fail is not None and device.fail(name, device.t):
                        raise RuntimeError(f"{name} crashed")
                    device.t += COSTS[name] / 1e3 * device.slowness(device.t)
                self.run = run
        return FakeModel


def _run(monkeypatch, capsys, bundle, out, device, *argv):
    runner = _runner()
    monkeypatch.setattr(runner, "Model", device.model_class())
    monkeypatch.setattr(runner, "_clock", device.clock)
    monkeypatch.setattr(runner, "_wall", device.clock)
    code = runner.main(["--bundle", str(bundle), "--out", str(out), "--busy-threshold", "100", *argv])
    text, err = capsys.readouterr()
    return runner, code, text, err


def _rows(path):
    return list(csv.DictReader(open(path, newline="")))


def test_the_runner_pairs_times_the_anchors_and_warns_when_the_device_throttles(tmp_path, monkeypatch, capsys):
    bundle = _bundle(tmp_path / "b", jobs=("B2", "B1"))
    out = tmp_path / "results.csv"
    # The device slows down by 30 % after 3 s (a thermal throttle): every model alike.
    device = _Device(lambda t: 1.3 if t > 3.0 else 1.0)
    runner, code, text, err = _run(monkeypatch, capsys, bundle, out, device, "--anchors-every", "0")
    assert code == 0, err
    rows = _rows(out)
    # B1 is a job and an anchor: a row; B0 and the other anchors are anchors only.
    assert [r["name"] for r in rows] == ["B2", "B1"] and {r["pairing"] for r in rows} == {"paired"}
    assert float(rows[0]["ratio"]) == pytest.approx(45.0 / 21.3)
    at = _rows(tmp_path / "results.anchors.csv")
    assert list(at[0]) == runner.ANCHOR_FIELDS and {r["format"] for r in at} == {"1"}
    sessions = list(dict.fromkeys(r["session"] for r in at))
    assert len(sessions) == 3  # at the start, after B2 (--anchors-every 0: always due), at the end
    assert {r["status"] for r in at} == {"ok"} and {r["anchor"] for r in at} == {n for n, _ in anchor_configs()}
    assert {r["config_hash"] for r in at} == {c.hash for _, c in anchor_configs()}
    for r in at:  # the ratios hold through the throttle
        assert float(r["ratio"]) == pytest.approx(COSTS[r["anchor"]] / 21.3)
    first = float(at[0]["reference_value"])
    assert first == pytest.approx(21.3) and float(at[-1]["reference_value"]) == pytest.approx(21.3 * 1.3)
    warnings = [line for line in text.splitlines() if line.startswith("warning: the device's phase moved")]
    assert warnings and all("+30%" in w and "bound ±10%" in w for w in warnings)
    assert "anchors: 3 sessions in" in text and "moved +30.0%..+30.0%" in text
    assert "results.anchors.csv beside it" in text


def test_a_quiet_device_gets_no_warning_and_alone_times_no_anchors(tmp_path, monkeypatch, capsys):
    bundle = _bundle(tmp_path / "b")
    _, code, text, _ = _run(monkeypatch, capsys, bundle, tmp_path / "r.csv", _Device())
    assert code == 0 and "warning" not in text
    assert len({r["session"] for r in _rows(tmp_path / "r.anchors.csv")}) == 2  # start and end
    _, code, text, _ = _run(monkeypatch, capsys, bundle, tmp_path / "alone.csv", _Device(), "--protocol", "alone")
    assert code == 0 and not (tmp_path / "alone.anchors.csv").exists()
    assert _rows(tmp_path / "alone.csv")[0]["pairing"] == "alone"


def test_a_reference_that_fails_fails_its_rows_and_anchors_with_the_reason(tmp_path, monkeypatch, capsys):
    bundle = _bundle(tmp_path / "b")
    # The reference loads (its first runs work), then crashes from 0.5 s on.
    device = _Device(fail=lambda name, t: name == "B0" and t > 0.5)
    _, code, text, _ = _run(monkeypatch, capsys, bundle, tmp_path / "r.csv", device)
    assert code == 0
    row = _rows(tmp_path / "r.csv")[0]
    assert row["status"] == "failed" and "reference B0 failed: RuntimeError: B0 crashed" in row["reason"]
    assert row["ratio"] == "" and row["value"] == ""  # never a ratio to nothing
    last = [r for r in _rows(tmp_path / "r.anchors.csv")][-5:]
    assert {r["status"] for r in last} == {"failed"} and all("reference B0 failed" in r["reason"] for r in last)
    assert all(r["ratio"] == "" for r in last)


def test_a_manifest_names_its_reference_and_anchors_among_its_models(tmp_path, capsys):
    bundle = _bundle(tmp_path / "b")
    m = json.loads((bundle / "manifest.json").read_text())
    runner = _runner()
    for change, says in ((dict(reference="f" * 64), "reference: must be the hash of a model of the bundle"),
                         (dict(anchors=[{"name": "x", "hash": "f" * 64}]), "anchors[0].hash: must be the hash"),
                         (dict(anchors=[{"name": "B1", "hash": m["reference"]}] * 2), "anchors[1].name: must be a distinct"),
                         (dict(reference=None), "anchors: need a reference")):
        (bundle / "manifest.json").write_text(json.dumps({**m, **change}))
        with pytest.raises(runner.BundleError, match=says.replace("[", r"\[").replace("]", r"\]")):
            runner.load_manifest(str(bundle))


# ---------------------------------------------------------------------------------------------- the import


def _ran(tmp_path, monkeypatch, capsys, device=None, **kw):
    bundle = _bundle(tmp_path / "b", **kw)
    out = tmp_path / "results.csv"
    _, code, _, err = _run(monkeypatch, capsys, bundle, out, device or _Device(lambda t: 1.0 + 0.05 * t))
    assert code == 0, err
    return out


def _import(capsys, *argv):
    from nas.cli import main

    try:
        code = main(["import", *argv])
    except SystemExit as e:
        code = e.code
    return (code, *capsys.readouterr())


def test_the_import_stores_the_anchor_sessions_as_the_devices_phase_series(tmp_path, monkeypatch, capsys):
    from measured import Store, load_series

    out = _ran(tmp_path, monkeypatch, capsys)
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, text, err = _import(capsys, str(out), "--store", store)
    assert code == 0, err
    line = text.splitlines()[-1]
    assert line.startswith("anchors: 2 session(s) from results.anchors.csv (2 new) over 0 min; moved +") and "phase now" in line
    s = Store(store)
    rows = s.measurements(device="test-pi")
    assert len(rows) == 1 and rows["pairing"].iloc[0] == "paired"
    key = rows["protocol"].iloc[0]
    at = s.anchor_timings(device="test-pi", protocol=key)
    assert at["session"].nunique() == 2 and set(at["source"]) == {"bundle"}
    assert set(at["anchor"]) == set(anchor_hashes())  # the anchors and the reference (pooled)
    series = load_series(s, "test-pi", key)
    last = max(r["session"] for r in _rows(tmp_path / "results.anchors.csv"))
    assert series.latest().session == last  # predict --phase now for this device uses the bundle's last session
    # Imported again: nothing new.
    code, text, _ = _import(capsys, str(out), "--store", store, "--json")
    d = json.loads(text)
    assert code == 0 and d["anchors"]["new_sessions"] == 0 and d["anchors"]["sessions"] == 2
    assert s.anchor_timings(device="test-pi", protocol=key)["session"].nunique() == 2


def test_results_without_anchors_are_kept_as_measured_and_say_so(tmp_path, monkeypatch, capsys):
    out = _ran(tmp_path, monkeypatch, capsys)
    (tmp_path / "results.anchors.csv").unlink()
    code, text, err = _import(capsys, str(out), "--store", f"sqlite:///{tmp_path / 's.sqlite'}")
    assert code == 0, err
    assert "no results.anchors.csv beside it" in text and "kept as measured, not phase-normalised" in text


def test_a_session_without_enough_anchors_fits_no_phase(tmp_path, monkeypatch, capsys):
    # Every anchor but one crashes: the sessions are stored (with the reasons), no phase is fitted from them.
    device = _Device(fail=lambda name, t: name in ("B1-unfused", "B1", "E2", "B3"))
    out = _ran(tmp_path, monkeypatch, capsys, device=device, jobs=("B2",))
    code, text, err = _import(capsys, str(out), "--store", f"sqlite:///{tmp_path / 's.sqlite'}")
    assert code == 0, err
    assert "8 anchor timing(s) failed" in text and "no phase fitted" in text


@pytest.mark.parametrize("edit, says", [
    (lambda r: r.update(anchor="B9"), "line 2: anchor: 'B9' is not an anchor; allowed: B0@160|"),
    (lambda r: r.update(config_hash="f" * 64), "line 2: config_hash: not this version's"),
    (lambda r: r.update(ratio="-1"), "line 2: ratio: must be a positive number"),
    (lambda r: r.update(ratio="9"), "line 2: ratio: must lie in [ratio_lo, ratio_hi]"),
    (lambda r: r.update(reference="f" * 64), "line 2: reference: not this version's B0"),
    (lambda r: r.update(format="2"), "line 2: format: must be 1"),
    (lambda r: r.update(timestamp="yesterday"), "line 2: timestamp: must be an ISO 8601 time"),
    (lambda r: r.update(session="../x"), "line 2: session: must be 16-64 hex digits"),
])
def test_a_bad_anchors_file_is_one_line_and_nothing_is_stored(tmp_path, monkeypatch, capsys, edit, says):
    from measured import Store

    out = _ran(tmp_path, monkeypatch, capsys)
    path = tmp_path / "results.anchors.csv"
    rows = _rows(path)
    edit(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = _import(capsys, str(out), "--store", store)
    assert code == 2 and err.count("\n") == 1 and says in err, err
    assert len(Store(store).measurements(device="test-pi", status=None)) == 0


def test_the_anchors_file_itself_is_not_imported_as_measurements(tmp_path, monkeypatch, capsys):
    _ran(tmp_path, monkeypatch, capsys)
    code, _, err = _import(capsys, str(tmp_path / "results.anchors.csv"), "--store",
                           f"sqlite:///{tmp_path / 's.sqlite'}")
    assert code == 2 and "holds a bundle run's anchor timings; import its results CSV" in err


def test_write_bundle_ships_the_reference_and_the_anchors(tmp_path, monkeypatch):
    """The manifest names them (format 3); models that are not jobs are anchor-only (exports faked: the graphs are
    test_bundle.py's subject)."""
    from measured import _bundle
    from measured._campaign import Job

    def fake_export(tasks, workers, progress):
        for t in tasks:
            cfg = json.loads(t["config_json"])
            yield {"hash": _hash(t["config_json"]), "name": t["name"], "file": f"models/{_hash(t['config_json'])[:16]}.onnx",
                   "sha256": "0" * 64, "input_shape": [1, 3, cfg["resolution"], cfg["resolution"]]}

    def _hash(config_json):
        from search_spaces import LowFormerConfig

        return LowFormerConfig.from_json(config_json).hash

    monkeypatch.setattr(_bundle, "_export_all", fake_export)
    job = Job(get_variant("B1").config, "mine")
    m = _bundle.write_bundle([job], str(tmp_path / "b"), progress=False).manifest
    assert m["format"] == 3 and m["reference"] == get_variant("B0").config.hash
    assert [a["name"] for a in m["anchors"]] == [n for n, _ in anchor_configs()]
    by = {e["hash"]: e for e in m["models"]}
    assert "anchor_only" not in by[job.config.hash] and by[job.config.hash]["name"] == "mine"  # a job stays a row
    assert all(by[a["hash"]].get("anchor_only") for a in m["anchors"] if a["hash"] != job.config.hash)
    assert by[m["reference"]]["anchor_only"] is True
    plain = _bundle.write_bundle([job], str(tmp_path / "plain"), progress=False, anchors=False).manifest
    assert plain["format"] == 2 and "anchors" not in plain and len(plain["models"]) == 1
    assert RUNNER.endswith("bundle_runner.py")
