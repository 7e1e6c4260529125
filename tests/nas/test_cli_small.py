"""Small things a new user runs into: units on numbers, device ids in any case, did-you-mean, `local` everywhere."""

import pytest

from nas.cli import build_parser, main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("text, ms", [("12", 12.0), ("12ms", 12.0), ("12 ms", 12.0), ("0.012s", 12.0), ("1.5e1MS", 15.0)])
def test_budget_takes_units(text, ms):
    args = build_parser().parse_args(["search", "--device", "jetson_tx2", "--budget-ms", text])
    assert args.budgets_ms == [pytest.approx(ms)]  # the SearchSettings field the flag fills


@pytest.mark.parametrize("text", ["12 fps", "twelve", "12msms", "nan"])
def test_budget_with_another_unit_lists_the_allowed_forms(capsys, text):
    code, _, err = run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", text)
    assert code == 2 and err.count("\n") == 1
    assert "'12' (ms) or with a unit, '12ms', '12s'" in err


def test_timeout_takes_units():
    args = build_parser().parse_args(["measure", "--model", "B0", "--timeout", "15min"])
    assert args.timeout == 900.0


def test_device_ids_in_any_case_and_did_you_mean(capsys):
    code, out, err = run(capsys, "search", "--device", "Jetson_TX2", "--budget-ms", "12ms", "--trials", "10", "--quiet",
                         "--no-png", "--study", "c", "--seed", "0")
    assert code == 0, err
    assert "jetson_tx2:latency_ms" in out
    code, _, err = run(capsys, "search", "--device", "jetson_tx", "--budget-ms", "12", "--trials", "10")
    assert code == 2 and "(did you mean jetson_tx2?)" in err and err.count("\n") == 1
    listed = err.split("devices with a predictor: ")[1]
    assert "imagenet1k" not in listed and "jetson_tx2" in listed  # a dataset is not a device


def test_local_is_resolved_for_data_export():
    from measured import local_device_id
    from nas.cli._before import resolve_local

    args = build_parser().parse_args(["data", "export", "x.csv", "--device", "local", "--device", "jetson_tx2"])
    resolve_local(args)
    assert args.device == [local_device_id(), "jetson_tx2"]


def test_search_json_is_one_object_on_stdout(capsys):
    import json

    code, out, err = run(capsys, "search", "--device", "jetson_tx2", "--budget-ms", "12", "--trials", "30", "--seed", "0",
                         "--study", "j", "--quiet", "--no-png", "--json")
    assert code == 0, err
    d = json.loads(out)  # nothing but the JSON on stdout; the human lines went to stderr
    assert d["study"] == "j" and d["front"] and "Pareto front:" in err
    first = d["front"][0]
    assert first["id"] == first["hash"][:12] and first["rank"] == 1 and "intervals" in first
    assert {n["name"] for n in d["named"]} >= {"B0", "B1"}
