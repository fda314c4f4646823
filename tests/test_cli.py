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
    for name in ("kalman_128x2", "kalman_64x3", "baseline_hold", "baseline_linear"):
        for protocol in ("standard", "generative"):
            assert math.isfinite(models[name][protocol]["mae"])
    for name in ("kalman_128x2", "kalman_64x3"):
        for baseline in ("baseline_hold", "baseline_linear"):
            assert models[name]["standard"]["mae"] < models[baseline]["standard"]["mae"]
        assert models[name]["n_traces"] == 1
    assert (tmp_path / "report.md").exists()
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    assert "Standard protocol" in capsys.readouterr().out


def test_cli_reports_errors_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["nonsense"])
