"""The README's Python example (folder -> held-out metrics -> trained model -> prediction with
its band), extracted from README.md and run as written on runs this test writes."""

import math
import re
from pathlib import Path

import pytest

from tests.test_cli_hr import write_run

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block() -> str:
    text = README.read_text()
    section = text.split("### From a folder of recordings to a trained model, in Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_hr_example_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(4):
        write_run(runs / f"run{i}.csv", 900, seed=i)
    code = readme_block()
    assert '"runs/"' in code and "wearjax." in code
    assert not re.search(r"from wearjax\.\w+\.\w+ import", code), "public names only"
    namespace: dict = {}
    exec(compile(code.replace('"runs/"', repr(str(runs))), "README", "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "sessions-out" in lines[0]
    maes = [float(line.split()[-3]) for line in lines[:2]]
    assert all(math.isfinite(m) and 0 < m < 40 for m in maes)
    mae, coverage = (float(v) for v in lines[2].split())
    assert math.isfinite(mae) and 0.0 <= coverage <= 1.0
    pred = namespace["pred"]
    assert (pred.generative_sd >= 0).all() and len(pred.generative) == 900
