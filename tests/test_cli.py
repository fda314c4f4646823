"""End to end: `wearjax demo --quick` as a user runs it."""

import json
import math

import pytest

from wearjax.cli import main


@pytest.mark.slow
def test_quick_demo_writes_metrics_and_beats_the_baselines(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    models = metrics["models"]
    trained = ("kalman_128x2", "kalman_64x3", "ode_128x2", "ode_64x3", "personal_ode")
    for name in (*trained, "baseline_hold", "baseline_linear"):
        for protocol in ("standard", "generative"):
            assert math.isfinite(models[name][protocol]["mae"])
    for name in trained:
        assert models[name]["n_traces"] == 1
        # every model beats the linear baseline in the standard protocol and holding the
        # first HR in the generative one
        assert models[name]["standard"]["mae"] < models["baseline_linear"]["standard"]["mae"]
        assert models[name]["generative"]["mae"] < models["baseline_hold"]["generative"]["mae"]
    for name in ("kalman_128x2", "kalman_64x3", "personal_ode"):
        assert models[name]["standard"]["mae"] < models["baseline_hold"]["standard"]["mae"]
    assert (tmp_path / "report.md").exists()
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    assert "Standard protocol" in capsys.readouterr().out


def test_cli_reports_errors_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["nonsense"])
