"""Cross-validation over several processes with JAX's own distributed runtime: two processes
on localhost (`jax.distributed.initialize`, CPU collectives), each training two of the four
folds, gather the same metrics as one process training all four."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    processes, rank, port = (int(a) for a in sys.argv[1:4])
    if processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"localhost:{port}", num_processes=processes, process_id=rank)
    from wearjax.cv import process_folds
    from wearjax.data.synthetic import simulate_cohort
    from wearjax.tasks.hr import HRStudyConfig
    from wearjax.tasks.hr_personal import PersonalConfig
    from wearjax.tasks.hr_study import run_hr_study
    from wearjax.train.loop import TrainConfig

    cohort = simulate_cohort(
        jax.random.key(0), n_runners=4, sessions_per_runner=2, min_minutes=6, max_minutes=8
    )
    config = HRStudyConfig(
        models=(("kalman", 16, 1),), train=TrainConfig(epochs=2, steps_per_epoch=3),
        batch_size=4, runners_out=1, seed=0,
        personal=PersonalConfig(
            train=PersonalConfig().train._replace(epochs=2, steps_per_epoch=3),
            calibration_steps=5,
        ),
    )
    results, pred = run_hr_study(cohort, config, progress=False)
    entry = results["models"]["kalman_16x1"]
    print(json.dumps({
        "trained": process_folds(4).tolist(),
        "mae": {p: entry[p]["mae"] for p in ("standard", "generative")},
        "coverage": {p: entry[p]["coverage_2sd"] for p in ("standard", "generative")},
        "best_val_loss": entry["best_val_loss"],
        "generative": pred["kalman_16x1"]["generative"].tolist(),
        "personal_mae": {p: results["models"]["personal_ode"][p]["mae"]
                         for p in ("standard", "generative")},
        "personal_best_epoch": results["models"]["personal_ode"]["best_epoch"],
        "personal_generative": pred["personal_ode"]["generative"].tolist(),
    }))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(processes: int, folder) -> list[dict]:
    """Start the processes at once, their output to files (a full pipe would block one
    process while the others wait for it at shutdown)."""
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    port = str(_free_port())
    files = [(folder / f"{processes}_{rank}.out", folder / f"{processes}_{rank}.err")
             for rank in range(processes)]  # fmt: skip
    procs = []
    for rank, (out, err) in enumerate(files):
        with open(out, "w") as o, open(err, "w") as e:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", SCRIPT, str(processes), str(rank), port],
                env=env, stdout=o, stderr=e, text=True,
            ))  # fmt: skip
    results = []
    for p, (out, err) in zip(procs, files, strict=True):
        assert p.wait(timeout=1200) == 0, err.read_text()[-3000:]
        results.append(json.loads(out.read_text().strip().splitlines()[-1]))
    return results


def test_two_processes_train_two_folds_each_and_gather_the_one_process_metrics(tmp_path):
    [single] = _run(1, tmp_path)
    both = _run(2, tmp_path)
    assert single["trained"] == [0, 1, 2, 3]
    assert [r["trained"] for r in both] == [[0, 1], [2, 3]]
    for r in both:  # every process holds the assembled cross-validation
        for key in ("mae", "coverage"):
            for p in ("standard", "generative"):
                np.testing.assert_allclose(r[key][p], single[key][p], rtol=1e-3)
        np.testing.assert_allclose(r["best_val_loss"], single["best_val_loss"], rtol=1e-3)
        np.testing.assert_allclose(r["generative"], single["generative"], atol=1e-2)
        # the personalised ODE shares its folds the same way
        for p in ("standard", "generative"):
            np.testing.assert_allclose(r["personal_mae"][p], single["personal_mae"][p], rtol=1e-3)
        assert r["personal_best_epoch"] == single["personal_best_epoch"]
        np.testing.assert_allclose(
            r["personal_generative"], single["personal_generative"], atol=1e-2
        )


def test_the_cli_shares_cv_hr_between_two_processes_and_process_0_writes(tmp_path):
    """`wearjax cv hr --distributed COORDINATOR,2,ID` on each of two processes writes, from
    process 0 only, the metrics one process writes alone."""
    from tests.test_cli_hr import write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(4):  # 4 sessions: leave-1-session-out, 4 folds, 2 per process
        write_run(runs / f"run{i}.csv", 600, seed=20 + i)
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "WEARJAX_CACHE": "off"}
    command = [sys.executable, "-m", "wearjax.cli", "cv", "hr", "--data", str(runs), "--quick",
               "--devices", "1"]  # fmt: skip
    one = subprocess.run([*command, "--out", str(tmp_path / "one")], env=env, text=True,
                         capture_output=True, timeout=1200)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                *command,
                "--out",
                str(tmp_path / f"p{rank}"),
                "--distributed",
                f"localhost:{port},2,{rank}",
            ],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=1200)[0] for p in procs]  # hangs, not slow days
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert not (tmp_path / "p1").exists()  # only process 0 writes
    assert "process 1: process 0 writes" in outputs[1]
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    shared = json.loads((tmp_path / "p0" / "metrics.json").read_text())
    assert shared["folds"]["n_folds"] == single["folds"]["n_folds"] == 4
    assert "best_val_loss" in single["models"]["kalman_32x1"]
    for name, entry in single["models"].items():  # the model and the baselines
        for p in ("standard", "generative"):
            for metric in ("mae", "rmse", "coverage_2sd"):
                if metric in entry[p]:
                    np.testing.assert_allclose(
                        shared["models"][name][p][metric], entry[p][metric], rtol=1e-3
                    )
        if "best_val_loss" in entry:
            np.testing.assert_allclose(
                shared["models"][name]["best_val_loss"], entry["best_val_loss"], rtol=1e-3
            )
