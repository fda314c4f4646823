"""`wearjax fit vo2` and `predict` with a VO2 checkpoint: one model trained on every subject
but those held out for early stopping, its prediction equal to the cross-validated study's path
on the same weights, read back from its file, and the CLI on a folder of a lab's own files."""

import dataclasses
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tasks.test_vo2 import toy_cohort, write_cpet_folder
from wearjax.cli import main as wearjax
from wearjax.data import read_cpet
from wearjax.data.types import SUBJECT_FIELDS
from wearjax.errors import WearjaxDataError, WearjaxFileError
from wearjax.eval.metrics import mae, mape
from wearjax.tasks import vo2 as vo2_study
from wearjax.tasks.vo2_fit import (
    load_vo2,
    predict_vo2,
    save_vo2,
    train_vo2_model,
    training_split,
)

TINY = vo2_study.VO2StudyConfig(
    variant=(4, 1),
    batch_size=2,
    validation_subjects=1,
    train=vo2_study.VO2StudyConfig().train._replace(epochs=2, steps_per_epoch=2),
)
COLUMNS = "time=Zeit,vo2=VO2 abs,hr=HF,work_rate=Last"


def test_training_split_holds_out_whole_subjects_and_tests_nothing():
    cohort = toy_cohort(n_runners=5)
    split = training_split(cohort, 2, seed=3)
    assert split.n_folds == 1 and not split.test.any()
    assert not (split.train & split.validation).any() and (split.train | split.validation).all()
    runner = np.asarray(cohort.runner)
    assert len(set(runner[split.validation[0]])) == 2
    assert not set(runner[split.validation[0]]) & set(runner[split.train[0]])
    assert training_split(cohort, 9, seed=0).train.any()  # at least one subject trains
    with pytest.raises(WearjaxDataError, match="1 subject: training needs 2"):
        training_split(toy_cohort(n_runners=1), 1, seed=0)


# The tests of the fitted study run in the slow step: its fit takes 30-45 s cold on 2 cores.
FITTED = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    cohort = toy_cohort(n_runners=4, t=120)
    return cohort, train_vo2_model(cohort, TINY, progress=False)


@FITTED
def test_prediction_is_the_studys_rollout_and_survives_the_file(trained, tmp_path):
    """`predict_vo2` on a session gives what the study's `predict` gives for it with the same
    model and normaliser, and its errors are the study's metrics over the seconds after the
    first; the checkpoint read back predicts the same to the bit."""
    cohort, checkpoint = trained
    header = checkpoint.header
    assert header["task"] == "vo2" and header["features"][0] == "hr_bpm"
    assert header["data"]["tests"] == 4 and len(header["data"]["validation_subjects"]) == 1
    session = dataclasses.replace(_session(cohort, 2), source="r2.csv")
    pred = predict_vo2(checkpoint, session)

    data, fold, _, _ = vo2_study.prepare(cohort, TINY)
    one_fold = jax.tree_util.tree_map(lambda a: a[:1], fold)._replace(
        normalizer=jax.tree_util.tree_map(lambda a: a[None], checkpoint.normalizer)
    )
    study = vo2_study.predict(checkpoint.model, _first(one_fold), data, 2)
    np.testing.assert_allclose(pred.vo2, np.asarray(study), rtol=1e-6, atol=1e-3)
    scored = vo2_study.scored_mask(data)[2]
    np.testing.assert_array_equal(pred.scored, scored)
    want = float(mae(study, data.vo2[2], jnp.asarray(scored)))
    assert pred.metrics["mae"] == pytest.approx(want, rel=1e-5)
    assert pred.metrics["mape"] == pytest.approx(
        float(mape(study, data.vo2[2], jnp.asarray(scored))), rel=1e-5
    )
    assert pred.v0 == pytest.approx(float(data.v0[2]))

    path = save_vo2(tmp_path / "vo2.wjx", checkpoint)
    again = predict_vo2(load_vo2(path), session)
    np.testing.assert_array_equal(again.vo2, pred.vo2)
    with pytest.raises(WearjaxFileError, match="not a VO2 model header"):
        from wearjax.train.checkpoints import save

        load_vo2(save(tmp_path / "other.wjx", {"task": "hr"}, ()))


@FITTED
def test_a_test_without_what_the_model_reads_is_named_and_subjects_are_filled(trained):
    cohort, checkpoint = trained
    session = _session(cohort, 1)
    no_cadence = dataclasses.replace(
        session, x=session.x[:, [0, 2]], channels=("speed", "altitude"), source="t.csv"
    )
    with pytest.raises(WearjaxDataError, match=r"t.csv: the model reads cadence, which this test"):
        predict_vo2(checkpoint, no_cadence)
    no_hr = dataclasses.replace(session, mask=np.zeros_like(session.mask), source="t.csv")
    with pytest.raises(WearjaxDataError, match="the model reads hr"):
        predict_vo2(checkpoint, no_hr)
    # no age: the training subjects' median, as the folder study fills a missing field
    age = SUBJECT_FIELDS.index("age_years")
    unknown = dataclasses.replace(session, subject=np.asarray(session.subject).copy())
    unknown.subject[age] = np.nan
    filled = dataclasses.replace(session, subject=np.asarray(session.subject).copy())
    filled.subject[age] = np.median(np.asarray(cohort.subject)[:, age])
    a, b = predict_vo2(checkpoint, unknown), predict_vo2(checkpoint, filled)
    np.testing.assert_array_equal(a.vo2, b.vo2)
    # a field every training test had the same (missing there, so 0 once stacked) taught the
    # model nothing: a test's own value of it, 60 SD from anything seen, is not fed in
    weight = SUBJECT_FIELDS.index("weight_kg")
    constant = list(checkpoint.header["subject_constant"])
    constant[weight] = True
    frozen = checkpoint._replace(header=checkpoint.header | {"subject_constant": constant})
    light, heavy = (dataclasses.replace(session, subject=np.asarray(session.subject).copy())
                    for _ in range(2))  # fmt: skip
    light.subject[weight], heavy.subject[weight] = 50.0, 90.0
    np.testing.assert_array_equal(predict_vo2(frozen, light).vo2, predict_vo2(frozen, heavy).vo2)
    assert not np.array_equal(
        predict_vo2(checkpoint, light).vo2, predict_vo2(checkpoint, heavy).vo2
    )


@pytest.mark.slow
def test_cli_fit_vo2_on_a_lab_folder_then_predict_a_new_test(tmp_path, capsys):
    folder, new = tmp_path / "cpet", tmp_path / "new"
    write_cpet_folder(folder, n_subjects=5)
    write_cpet_folder(new, n_subjects=7)  # the same lab; subject6 is one the model never saw
    model = tmp_path / "vo2.wjx"
    argv = [
        "fit",
        "vo2",
        "--data",
        str(folder),
        "--columns",
        COLUMNS,
        "--quick",
        "--out",
        str(model),
    ]
    assert wearjax(argv) == 0
    out = capsys.readouterr().out
    assert "on 5 tests of 5 subjects" in out and f"wrote {model}" in out
    assert not model.with_name("vo2.wjx.state").exists()
    header = json.loads(model.read_bytes().partition(b"\n")[0])
    assert header["read"]["columns"]["vo2"] == "VO2 abs"  # predict reads files the same way
    test = new / "subject6" / "ramp.csv"
    assert wearjax(["predict", "--model", str(model), str(test), "--out", str(tmp_path / "p")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("ramp: 300 s from a first second of") and "MAPE" in line
    rows = (tmp_path / "p" / "ramp.csv").read_text().splitlines()
    assert rows[0] == "second,time_s,vo2_pred_ml_min,vo2_ml_min" and len(rows) == 301
    start = read_cpet(test, **header["read"]).start_time_s
    assert [float(r.split(",")[1]) for r in rows[1:3]] == [start, start + 1]  # the file's clock
    # a test with VO2 at its start alone (a calibration minute) is predicted, its 10 s scored
    lines = test.read_text().splitlines()  # Zeit;VO2 abs;HF;Last
    blank = lambda r: ";".join(c if j != 1 else "" for j, c in enumerate(r.split(";")))  # noqa: E731
    cut = [lines[0], *lines[1:11], *map(blank, lines[11:])]
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "ramp.csv").write_text("\n".join(cut) + "\n")
    assert wearjax(["predict", "--model", str(model), str(tmp_path / "calibration" / "ramp.csv"),
                    "--out", str(tmp_path / "pc")]) == 0  # fmt: skip
    assert "over 9 s" in capsys.readouterr().out.splitlines()[0]
    clockless = tmp_path / "noclock.wjx"
    assert wearjax([*argv[:-1], str(clockless), "--without-clock"]) == 0
    features = json.loads(clockless.read_bytes().partition(b"\n")[0])["features"]
    assert "hr_bpm" in features and not {"window_index", "elapsed_min"} & set(features)
    p2 = tmp_path / "p2"
    assert wearjax(["predict", "--model", str(clockless), str(test), "--out", str(p2)]) == 0
    assert (p2 / "ramp.csv").exists()
    capsys.readouterr()
    assert wearjax(["fit", "vo2", "--data", "synthetic", "--out", str(tmp_path / "s.wjx")]) == 2
    assert "fit vo2 trains on exercise tests" in capsys.readouterr().err
    assert wearjax(["predict", "--model", str(model), str(test), "--hr0", "90",
                    "--out", str(tmp_path / "q")]) == 2  # fmt: skip
    assert "a VO2 model reads none" in capsys.readouterr().err
    # a folder is predicted test by test against the model: a test without the load column
    # is skipped, the others keep theirs (read as a cohort, all lost it and all were refused);
    # --columns describes these files (their load column is named Load, an alias)
    for path in new.glob("*/ramp.csv"):
        path.write_text(path.read_text().replace(";Last", ";Load", 1))
    lines = (new / "subject5" / "ramp.csv").read_text().splitlines()
    (new / "subject5" / "ramp.csv").write_text("\n".join(r.rsplit(";", 1)[0] for r in lines))
    mine = ["--columns", "time=Zeit,vo2=VO2 abs,hr=HF", "--out", str(tmp_path / "all")]
    assert wearjax(["predict", "--model", str(model), str(new), *mine]) == 0
    captured = capsys.readouterr()
    assert "subject5/ramp.csv: the model reads work_rate, which this test lacks" in captured.err
    assert len(list((tmp_path / "all").glob("*.csv"))) == 6


@pytest.mark.skipif(importlib.util.find_spec("pyoxynet") is None, reason="pyoxynet not installed")
def test_a_pyoxynet_file_read_by_the_generic_reader_gives_the_studys_inputs():
    """A model fitted on `--data pyoxynet` (read by `data.pyoxynet`) predicts files read by
    `read_cpet`: the same test through both readers gives the same features."""
    from wearjax.data import read_cpet
    from wearjax.data.pyoxynet import load_ramp_tests
    from wearjax.data.types import stack_sessions

    (study,), _ = load_ramp_tests(1)
    generic = read_cpet(study.source)
    keep = [generic.channels.index(c) for c in study.channels]
    generic = dataclasses.replace(generic, x=generic.x[:, keep], channels=study.channels)
    a, names_a = vo2_study.cohort_features(stack_sessions([study], bucket=60))
    b, names_b = vo2_study.cohort_features(stack_sessions([generic], bucket=60))
    assert names_a == names_b
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def _session(cohort, i):
    """Session `i` of a stacked toy cohort, unpadded."""
    n = int(cohort.lengths[i])
    from wearjax.data.types import Session

    return Session(
        x=np.asarray(cohort.x[i, :n]), hr=np.asarray(cohort.hr[i, :n]),
        vo2=np.asarray(cohort.vo2[i, :n]), mask=np.asarray(cohort.mask[i, :n]),
        vo2_mask=np.asarray(cohort.vo2_mask[i, :n]), subject=np.asarray(cohort.subject[i]),
        runner=cohort.runner_names[int(cohort.runner[i])], channels=cohort.channels,
    )  # fmt: skip


def _first(fold):
    return jax.tree_util.tree_map(lambda a: a[0], fold)


def test_predict_overrides_only_the_reading_options_it_is_given(tmp_path, monkeypatch):
    """`predict --columns` alone keeps the training's `--vo2-unit`, and the reverse; until
    2026-12-07 either one given reset the other to detection."""
    import argparse
    from types import SimpleNamespace

    import wearjax.data
    import wearjax.tasks.vo2_fit
    from wearjax.errors import WearjaxError
    from wearjax.tasks.vo2_cli import predict_command

    trained = {"columns": {"vo2": "VO2 abs", "hr": "HF"}, "vo2_unit": "L/min"}
    checkpoint = SimpleNamespace(header={"read": trained})
    monkeypatch.setattr(wearjax.tasks.vo2_fit, "load_vo2", lambda path: checkpoint)
    seen = []

    def read_cpet(path, **read):
        seen.append(read)
        raise WearjaxError("read")  # what predict does next is not the subject here

    monkeypatch.setattr(wearjax.data, "read_cpet", read_cpet)
    test = tmp_path / "ramp.csv"
    test.write_text("t,VO2\n")
    for columns, unit in ((None, None), ("vo2=VO2", None), (None, "mL/min")):
        args = argparse.Namespace(model=tmp_path / "m.wjx", file=test, out=tmp_path / "p",
                                  columns=columns, vo2_unit=unit)  # fmt: skip
        with pytest.raises(WearjaxError, match="read"):
            predict_command(args, print)
    one = {"min_length_s": 1}  # a test needs only the first second of VO2 (the model's)
    assert seen[0] == {**trained, **one}
    assert seen[1] == {"columns": {"vo2": "VO2"}, "vo2_unit": "L/min", **one}
    assert seen[2] == {"columns": trained["columns"], "vo2_unit": "mL/min", **one}


def test_predict_with_a_vo2_model_refuses_a_watch_file_naming_what_it_needs(tmp_path, monkeypatch):
    """Until 2026-12-07 a .fit file went to the CSV reader and came back as 'no time column'
    with its binary bytes for a header."""
    import argparse
    from types import SimpleNamespace

    import wearjax.tasks.vo2_fit
    from wearjax.errors import WearjaxError
    from wearjax.tasks.vo2_cli import predict_command

    monkeypatch.setattr(wearjax.tasks.vo2_fit, "load_vo2", lambda p: SimpleNamespace(header={}))
    run = tmp_path / "run.fit"
    run.write_bytes(b"\x0e\x10binary")
    args = argparse.Namespace(model=tmp_path / "m.wjx", file=run, out=tmp_path / "p",
                              columns=None, vo2_unit=None)  # fmt: skip
    want = r"run\.fit: a VO2 model predicts a CPET export \(\.csv, \.tsv, \.txt\) .* not a \.fit"
    with pytest.raises(WearjaxError, match=want + r" file; .* with an HR model"):
        predict_command(args, print)
