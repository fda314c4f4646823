"""End to end: `wearjax demo --quick` as a user runs it."""

import json
import math
import re

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
        # every model beats both baselines in both protocols
        for protocol in ("standard", "generative"):
            for baseline in ("baseline_hold", "baseline_linear"):
                assert models[name][protocol]["mae"] < models[baseline][protocol]["mae"]
        # the band, calibrated on one validation runner per fold, covers 90% or more of true
        # HR in the standard protocol (measured 96.6-98.4%; the generative one: 81-100%)
        assert models[name]["standard"]["coverage_2sd"] > 0.9
    assert (tmp_path / "report.md").exists()
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    assert "Standard protocol" in capsys.readouterr().out


def test_cli_reports_errors_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["nonsense"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cv", "hr", "--data", "{tmp}/none", "--out", "{tmp}/o"], "--data .*none: no such file"),
        (["cv", "vo2", "--data", "{tmp}/none", "--out", "{tmp}/o"], "--data .*none: no such"),
        (["fit", "hr", "--data", "{tmp}", "--out", "{tmp}"], "is a folder; pass the checkpoint"),
        (["cv", "hr", "--data", "{tmp}", "--out", "{tmp}/file"], "is a file; pass a folder"),
        (["predict", "--model", "{tmp}/file", "{tmp}/none.csv"], "recording .*none.csv: no such"),
        (["predict", "--model", "{tmp}/none", "{tmp}/file"], "--model .*none: no such"),
        (["predict", "--model", "{tmp}/file", "{tmp}/file", "--hr0", "nan"], "--hr0 nan: give"),
        (["predict", "--model", "{tmp}/file", "{tmp}/file", "--hr0", "-50"], "--hr0 -50.0: give"),
        (["demo", "--mesh", "64x2", "--out", "{tmp}/o"], r"needs 128, but \d+ are visible"),
        (["fit", "pretrain", "--mesh", "2", "--out", "{tmp}/o"], "`fit pretrain` trains no folds"),
        (["fit", "hr", "--data", "{tmp}/d", "--mesh", "2", "--out", "{tmp}/o"], "leave --mesh"),
        (["fit", "pretrain", "--devices", "2", "--out", "{tmp}/o"], "leave --devices out"),
        (["demo", "--devices", "0", "--out", "{tmp}/o"], "--devices 0: give a number"),
        (["demo", "--devices", "7", "--out", "{tmp}/o"], "--devices 7: JAX has already started"),
        (["demo", "--out", "{tmp}/file/o"], r"file/o: .*file is a file, not a folder"),
        (["fit", "pretrain", "--out", "{tmp}/file/o/enc.wjx"], "is a file, not a folder"),
        (["predict", "--model", "{tmp}/file", "{tmp}", "--out", "{tmp}/o"], "inside the record"),
        (["fit", "virtual", "--data", "{tmp}/d", "--mesh", "2", "--out", "{tmp}/o"], "--mesh out"),
        (["fit", "hr", "--data", "{tmp}/d", "--out", "{tmp}/file"], "not a wearjax checkpoint"),
        (["fit", "hr", "--data", "{tmp}/d", "--out", "{tmp}/d/m.wjx"], "inside the recordings'"),
        (["cv", "hr", "--data", "{tmp}/d", "--out", "{tmp}/d/o"], "inside the recordings' folder"),
        (["fit", "virtual", "--subjects-out", "2", "--out", "{tmp}/v.wjx"], "is for cv virtual"),
        (
            ["cv", "vo2", "--data", "pyoxynet", "--vo2-unit", "L/min", "--out", "{tmp}/o"],
            "--vo2-unit describes your own CPET files; --data pyoxynet takes none",
        ),
        (
            ["cv", "vo2", "--data", "synthetic", "--columns", "vo2=V", "--out", "{tmp}/o"],
            "--columns describes your own",
        ),
    ],
)
def test_bad_arguments_are_one_line_before_any_work(tmp_path, capsys, argv, message):
    import jax

    jax.devices()  # JAX has started, as after any earlier command in this process
    (tmp_path / "file").write_text("x")
    (tmp_path / "d").mkdir()
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("wearjax: ")
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "o").exists()


def test_fit_may_write_over_a_checkpoint_but_no_other_file(tmp_path):
    """The `--out` check reads only a checkpoint's header: refitting into the same file is
    allowed, as it always was; a checkpoint of another `fit` (an encoder pretrained for hours,
    replaced by an HR model until 2026-12-07) is not written over."""
    import argparse

    import jax

    from wearjax.errors import WearjaxError
    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.arguments import check_arguments
    from wearjax.tasks.pretrain import PretrainConfig, save_encoder

    enc = save_encoder(tmp_path / "enc.wjx", build_transformer("tiny", key=jax.random.key(0)),
                       PretrainConfig("tiny"))  # fmt: skip
    check_arguments(argparse.Namespace(out=enc, task="pretrain", resume=False), "fit")
    for task in ("hr", "vo2", "virtual"):
        with pytest.raises(WearjaxError, match=f"holds a `fit pretrain` checkpoint; `fit {task}`"):
            check_arguments(argparse.Namespace(out=enc, task=task, resume=False), "fit")
    enc.write_bytes(b"time,ppg\n0,1\n")
    with pytest.raises(WearjaxError, match="exists and is not a wearjax checkpoint"):
        check_arguments(argparse.Namespace(out=enc, task="pretrain", resume=False), "fit")


def test_predict_never_writes_over_the_recording_it_reads(tmp_path, capsys):
    """Nor beside it: `run.fit` predicted into its own folder would have written `run.csv`
    and `run.png` over the user's own files of those names (until 2026-12-07)."""
    run = tmp_path / "run0.csv"
    run.write_text("second,hr\n0,120\n")
    fit, own = tmp_path / "run1.fit", tmp_path / "run1.csv"
    fit.write_bytes(b"")
    own.write_text("my own export\n")
    for recording in (run, fit):
        code = main(["predict", "--model", str(run), str(recording), "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "is the recording's own folder" in err[0]
    assert run.read_text() == "second,hr\n0,120\n" and own.read_text() == "my own export\n"


ARGPARSE_REFUSES = [
    ["demo", "--seed", "-1"],
    ["demo", "--seed", str(2**32)],
    ["cv", "probe", "--encoder", "e", "--out", "o", "--quick"],
]


@pytest.mark.parametrize("argv", ARGPARSE_REFUSES)
def test_argparse_refuses_a_seed_out_of_range_and_options_a_command_lacks(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert ("not a whole number from 0 to 4294967295" in capsys.readouterr().err) == (
        "--seed" in argv
    )


def test_fit_hr_refuses_to_overwrite_an_interrupted_runs_state(tmp_path, capsys):
    (tmp_path / "m.wjx.state").write_text("state")
    (tmp_path / "runs").mkdir()
    argv = ["fit", "hr", "--data", str(tmp_path / "runs"), "--out", str(tmp_path / "m.wjx")]
    assert main(argv) == 2
    assert "holds an interrupted run: pass --resume" in capsys.readouterr().err
    assert main([*argv[:-2], "--out", str(tmp_path / "n.wjx"), "--resume"]) == 2
    assert "--resume: no training state" in capsys.readouterr().err
    assert (tmp_path / "m.wjx.state").read_text() == "state"
    pretrain = ["fit", "pretrain", "--quick", "--out", str(tmp_path / "m.wjx")]  # the same
    assert main(pretrain) == 2
    assert "holds an interrupted run: pass --resume" in capsys.readouterr().err
    assert main([*pretrain[:-1], str(tmp_path / "n.wjx"), "--resume"]) == 2
    assert "--resume: no training state" in capsys.readouterr().err


def test_cv_hr_keeps_an_interrupted_study_and_resumes_only_one(tmp_path, capsys):
    (tmp_path / "runs").mkdir()  # no recording: the checks come before reading any
    argv = ["cv", "hr", "--data", str(tmp_path / "runs"), "--out", str(tmp_path / "cv")]
    assert main([*argv, "--resume"]) == 2
    assert "--resume: no interrupted study in" in capsys.readouterr().err
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "partial.json").write_text("{}")
    assert main(argv) == 2
    assert "holds an interrupted cv hr study (partial.json): pass --resume" in (
        capsys.readouterr().err
    )
    assert (tmp_path / "cv" / "partial.json").read_text() == "{}"


def test_demo_refuses_folds_its_mesh_cannot_split_before_simulating(tmp_path, capsys, monkeypatch):
    """The quick demo has 2 folds: a fold axis of 3 devices is refused before the cohort is
    simulated (the check `cv.fit_folds` makes again once training starts)."""
    import jax
    import numpy as np

    import wearjax.data.synthetic
    import wearjax.sharding

    one = jax.devices()[0]  # a mesh of three entries, only checked, never run on
    mesh = jax.sharding.Mesh(np.array([one] * 3).reshape(3, 1), ("fold", "data"))
    monkeypatch.setattr(wearjax.sharding, "current_mesh", lambda: mesh)

    def simulate(*args, **kwargs):
        raise AssertionError("the cohort was simulated before the mesh was checked")

    monkeypatch.setattr(wearjax.data.synthetic, "simulate_cohort", simulate)
    code = main(["demo", "--quick", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "2 folds cannot be split evenly over 3 devices" in err[0], err[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--distributed", "host:1,2,5"], "give COORDINATOR,PROCESSES,ID"),
        (["demo", "--distributed", "host:1,two,0"], "give COORDINATOR,PROCESSES,ID"),
        (["demo", "--distributed", "10.0.0.1,2,0"], "the coordinator as HOST:PORT"),
        (["demo", "--distributed", "localhost:notaport,1,0"], "the coordinator as HOST:PORT"),
        (["demo", "--distributed", "h:70000,2,0"], "the coordinator as HOST:PORT"),
        (["cv", "virtual", "--subjects-out", "0"], "--subjects-out: '0' is not a whole number"),
        (["cv", "vo2", "--data", "synthetic", "--distributed"], "unrecognized arguments"),
    ],
)
def test_distributed_is_checked_when_parsed_and_offered_where_folds_are_shared(
    tmp_path, capsys, argv, message
):
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--out", str(tmp_path / "o")])
    assert exit.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_failed_distributed_start_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import jax

    asked = []

    def initialize(*args):
        asked.append(args)
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    assert main(["demo", "--distributed", "--out", str(tmp_path / "o")]) == 2
    assert main(["demo", "--distributed", "h:1,2,1", "--out", str(tmp_path / "o")]) == 2
    assert asked == [(), ("h:1", 2, 1)]  # JAX's cluster detection, then the named processes
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wearjax: --distributed: coordinator_address should be defined."] * 2
    assert not (tmp_path / "o").exists()


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys, tmp_path):
    from wearjax.tasks import commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(commands.TASKS["vo2"], "cv", commands.TASKS["vo2"]["cv"]._replace(
        run=interrupted))  # fmt: skip
    assert main(["cv", "vo2", "--data", "synthetic", "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0]


@pytest.mark.parametrize(
    ("xla_flags", "expected"),
    [("", "cores"), ("--xla_force_host_platform_device_count=3", 3)],
)
def test_the_cli_makes_one_cpu_device_per_core_unless_the_user_set_a_count(xla_flags, expected):
    """`cli.cpu_devices` (run by every training command without --mesh) gives JAX one CPU
    device per usable core, so the folds can spread over them; a count set in XLA_FLAGS wins."""
    import os
    import subprocess
    import sys

    code = (
        "import os, jax; from wearjax.cli import cpu_devices; cpu_devices(); "
        "print(len(jax.devices()), len(os.sched_getaffinity(0)))"
    )
    if expected == "cores":  # --devices N asks for N, whatever the cores
        asked = code.replace("cpu_devices()", "cpu_devices(5)")
        env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-c", asked], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.split()[0]) == 5
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    devices, cores = (int(n) for n in out.stdout.split())
    assert devices == (cores if expected == "cores" else expected)


@pytest.mark.parametrize("value", ["nan", "1.5", "0", "-0.2", "half"])
def test_fit_pretrain_refuses_a_mask_ratio_outside_0_1_before_building_its_corpus(
    value, tmp_path, capsys
):
    """Until 2026-12-07 `--mask-ratio` was any float, refused only after the corpus was
    simulated or read."""
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "pretrain", "--mask-ratio", value, "--out", str(tmp_path / "e.wjx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert f"--mask-ratio: {value!r} is not a number between 0 and 1" in err[-1]


@pytest.mark.parametrize(
    "argv",
    [
        ["cv", "vo2", "--data", "basic_motions"],
        ["cv", "virtual", "--data", "pyoxynet"],
        ["cv", "probe", "--encoder", "e.wjx", "--data", "synthetic"],
    ],
)
def test_another_tasks_built_in_data_name_is_a_missing_path_before_any_work(argv, tmp_path, capsys):
    """Until 2026-12-07 every task took every built-in name, and `cv vo2` made OUT and its
    study state before it failed on one it does not know."""
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder (cv " in err[0] and "knows" in err[0], err
    assert not out.exists()
