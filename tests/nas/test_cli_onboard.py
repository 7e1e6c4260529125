"""The onboard command's refusals (one line, exit 2, nothing stored) and `--device local` everywhere."""

import pytest

from measured import local_device_id
from nas.cli import main


@pytest.mark.parametrize("argv, message", [
    (["onboard", "--configs", "3"], "configs: must be an integer in [6, 20000]"),
    (["onboard", "--minutes", "0"], "minutes: must be > 0"),
    (["onboard", "--device", "../x", "--bundle", "b"], "is not a device id"),
    (["onboard", "--device", "jetson_tx2"], "'jetson_tx2' is another machine"),
    (["onboard", "--bundle", "b"], "--bundle and --results onboard another device"),
    (["onboard", "--device", "rpi_x", "--results", "r.csv"], "no onboarding bundle was written for 'rpi_x'"),
    (["onboard", "--bundle", "b", "--results", "r.csv"], "give one of --bundle, --results and --evaluate"),
])
def test_bad_onboarding_is_one_line_and_stores_nothing(argv, message, capsys, tmp_path):
    pytest.importorskip("torch")
    store = str(tmp_path / "s.sqlite")
    assert main(argv + ["--store", store, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    from measured import Store

    assert not len(Store(store, seed=False).measurements(device=local_device_id()))


def test_local_is_this_machine_and_a_search_without_predictor_says_how_to_get_one(capsys):
    assert main(["predict", "--device", "local", "--model", "B1"]) == 2
    err = capsys.readouterr().err
    assert f"no predictor for {local_device_id()!r} (this machine) yet; onboard it first" in err
    assert "lowformer-nas onboard --device local" in err
    assert main(["search", "--device", "local", "--budget-ms", "30", "--trials", "3", "--quiet"]) == 2
    assert "onboard it first" in capsys.readouterr().err
