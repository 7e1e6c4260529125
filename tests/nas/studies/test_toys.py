import filecmp
import pathlib

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from nas.studies import _toy_search, _toys  # noqa: E402
from nas.studies._toys import count_macs, count_params  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data" / "toy_models.csv"


def test_shipped_toy_models_csv_is_the_projects():
    if not SHARED.exists():
        pytest.skip(f"compares the shipped toy-model table with the project's copy, expected at {SHARED} (the "
                    "project's shared/ folder beside this checkout); clone or copy shared/ there to run it")
    assert filecmp.cmp(_toys.TOY_MODELS_CSV, SHARED, shallow=False)


def test_table1_macs_within_2_percent_of_the_paper():
    toys = _toys.table1_toys()
    assert [t.name for t in toys] == [f"toy#{i}" for i in range(1, 7)]
    for t in toys:
        paper = t.meta["paper_macs_m"] * 1e6
        assert abs(t.macs / paper - 1) <= 0.02, (t.name, t.macs, paper)
        # The paper truncates MACs (docs/architecture.md §11); ours: 462.3 / 41.9 / 948.6 / 81.7 / 1712.1 / 104.4 M.
        assert t.resolution == 224 and t.input_shape() == (1, 3, 224, 224)


def test_table1_depthwise_models_have_twice_the_layers():
    by_group = {}
    for t in _toys.table1_toys():
        by_group.setdefault(t.meta["group"], {})[t.meta["depthwise"]] = t.spec["depths"]
    for g, d in by_group.items():
        assert tuple(2 * x for x in d[False]) == tuple(d[True]) == tuple(2 * x for x in _toys.TABLE1_DEPTHS[g])


def test_the_search_picks_the_constants():
    # The full search (kernels 3/5/7, both stride placements) runs in `python -m nas.studies._toy_search`;
    # here the chosen kernel and stride placement, over every depth vector.
    best = _toy_search.search(kernels=(_toys.KERNEL,), strides=(_toys.STRIDE_AT,))[0]
    assert best.depths == _toys.TABLE1_DEPTHS and best.worst <= _toy_search.TOLERANCE


def test_search_sums_layers_like_the_whole_model():
    for t in _toys.table1_toys()[:2]:
        s = t.spec
        assert _toy_search.model_macs(s["channels"], s["depths"], s["depthwise"], s["kernel"], s["stride_at"]) == t.macs


def test_depthwise_model_is_only_depthwise():
    m = _toys.build_table1((30, 60, 120, 240, 480), (1, 1, 1, 1, 1), depthwise=True)
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert all(c.groups == c.in_channels for c in convs)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 480, 2, 2)
    with pytest.raises(ValueError):
        _toys.build_table1((30, 45, 120, 240, 480), (1, 1, 1, 1, 1), depthwise=True)


def test_stride_placement():
    first = _toys.table1_layers((16, 32, 64, 128, 256), (2, 2, 2, 2, 2), False, 3, "first")
    last = _toys.table1_layers((16, 32, 64, 128, 256), (2, 2, 2, 2, 2), False, 3, "last")
    assert [s for _, _, s, _ in first][:2] == [2, 1] and [s for _, _, s, _ in last][:2] == [1, 2]


def test_counting_follows_the_projects_convention():
    # docs/architecture.md §11: conv MACs = out_pixels * C_out * k^2 * C_in / groups; FusedMBConv(C, e4) = 40 * HW * C^2.
    c, r = 64, 28
    fused = count_macs(_toys.build_mbconv_stack(c, fused=True, layers=1, expansion=4), (1, c, r, r))
    assert fused == 40 * r * r * c * c
    unfused = count_macs(_toys.build_mbconv_stack(c, fused=False, layers=1, expansion=4), (1, c, r, r))
    assert unfused == r * r * (4 * c * c * 2 + 4 * c * 9)


def test_table3_variants():
    c, layers, resolutions = _toys.table3_facts()
    assert (c, layers, resolutions) == (128, 4, (8, 16, 32, 64))
    # conv+low+chcompr. is LowFormer's stage-3 Lowtention: docs/architecture.md §3.3 gives 159,488 params with the 256 of its GN.
    assert count_params(_toys.attention_layer("conv+low+chcompr.", 128)) == 159_488 - 256
    x = torch.randn(1, 128, 16, 16)
    for v in _toys.TABLE3_VARIANTS:
        assert _toys.build_attention_stack(v, 128, 2).eval()(x).shape == x.shape
    macs = {v: count_macs(_toys.build_attention_stack(v, 128, 1), (1, 128, 32, 32)) for v in _toys.TABLE3_VARIANTS}
    assert macs["chcompr."] < macs["MHSA"] and macs["conv+low+chcompr."] < macs["conv+low"] < macs["MHSA"]
    with pytest.raises(ValueError):
        _toys.attention_layer("linear", 128)


def test_fig3_grid_within_the_papers_ranges():
    e, (c_lo, c_hi), (r_lo, r_hi) = _toys.fig3_facts()
    assert e == 4
    assert c_lo <= min(_toys.FIG3_CHANNELS) and max(_toys.FIG3_CHANNELS) <= c_hi
    assert r_lo <= min(_toys.FIG3_RESOLUTIONS) and max(_toys.FIG3_RESOLUTIONS) <= r_hi
    toys = _toys.fig3_toys()
    assert len(toys) == 2 * len(_toys.FIG3_CHANNELS) * len(_toys.FIG3_RESOLUTIONS)


def test_table2_pairs_have_about_equal_macs():
    toys = {t.name: t for t in _toys.table2_toys()}
    assert len(toys) == 14 and _toys.table2_layers() == 20
    for k in range(1, 8):
        hr, hc = toys[f"toy-T2#{k}-hr"], toys[f"toy-T2#{k}-hc"]
        assert hr.resolution > hc.resolution and hr.input_chw[0] < hc.input_chw[0]
        assert 0.9 < hr.macs / hc.macs < 1.1


def test_fig8_points_are_search_space_configs():
    pts = _toys.fig8_points()
    assert {p.name for p in pts} == set(_toys.FIG8_VARIANTS)
    assert {p.resolution for p in pts} == set(_toys.FIG8_RESOLUTIONS)
    b1 = next(p for p in pts if p.name == "B1" and p.resolution == 224)
    assert b1.macs == 1_410_980_096 and b1.architecture().in_space


def test_config_hash_is_stable_and_follows_the_definition():
    a, b = _toys.table1_toys()[0], _toys.table1_toys()[0]
    assert a.config_hash == b.config_hash and len(a.config_hash) == 64
    quick = _toys.table1_toys(quick=True)[0]
    assert quick.config_hash != a.config_hash
    arch = a.architecture().validate()
    assert (arch.family, arch.name, arch.in_space, arch.macs) == ("toy", "toy#1", False, a.macs)


@pytest.mark.parametrize("toys", [
    lambda: _toys.table1_toys(quick=True)[:2],
    lambda: _toys.table2_toys(quick=True)[:2],
    lambda: _toys.fig3_toys(quick=True)[:2],
    lambda: [t for t in _toys.table3_toys(quick=True) if t.resolution == 8],
], ids=["table1", "table2", "fig3", "table3"])
def test_toy_models_build_export_and_run(tmp_path, toys):
    import onnxruntime as ort

    from measured._backends import _input, export_module_onnx

    for t in toys():
        path = export_module_onnx(t.build(), t.input_shape(), str(tmp_path / "m.onnx"))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = _input(t.input_shape())
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        with torch.no_grad():
            ref = t.build()(torch.from_numpy(x)).numpy()
        assert y.shape == ref.shape
        assert abs(y - ref).max() <= 1e-3 * max(1.0, abs(ref).max())
