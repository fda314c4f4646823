"""`wearjax cv vo2`: its options and the command (the table in `tasks.commands` names them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wearjax.errors import TrainingInterrupted, WearjaxError

# the options a resumed `cv vo2` must share with the interrupted one (the training state's own
# fingerprint covers the data and the model)
KEYED = ("data", "quick", "seed", "columns", "vo2_unit", "gas_inputs", "without_clock")
CLOCK = ("window_index", "elapsed_min")  # `--without-clock`: inputs counting from the start


def arguments(p: argparse.ArgumentParser) -> None:
    """`wearjax cv vo2`'s options."""
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (HR -> VO2 on the simulated cohort), 'pyoxynet' (its real ramp "
        "tests) or a folder of your CPET CSV files",
    )
    p.add_argument(
        "--columns",
        default=None,
        help="your files' column names, e.g. 'vo2=VO2 (ml/min),hr=HR,work_rate=Load'",
    )
    p.add_argument(
        "--vo2-unit",
        choices=("mL/min", "L/min"),
        default=None,
        help="unit of your VO2 column (default: detected from its magnitude)",
    )
    p.add_argument(
        "--gas-inputs",
        action="store_true",
        help="feed your files' VCO2 and VE to the model (they come from the analyser that "
        "measures VO2, so the scores are no longer from wearable signals; the baselines read HR)",
    )
    p.add_argument(
        "--without-clock",
        action="store_true",
        help="leave out the time since the test's start (window index, elapsed minutes): they "
        "tie the model to its training tests' protocol (pyoxynet: 9.5%% MAPE on other ramp "
        "tests with them, 12.9%% without; 53%% and 28%% on resting-to-exercise tests)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted study from "
                   "the training state it kept in OUT (same data and options)")  # fmt: skip


def _parse_columns(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    bad = [p[0] for p in pairs if len(p) != 2 or not p[1].strip()]
    if bad:
        raise WearjaxError(
            f"--columns: {bad[0]!r} is not NAME=COLUMN; write e.g. 'vo2=VO2 (ml/min),hr=HR'"
        )
    return {k.strip(): v.strip() for k, v in pairs}


def cv_command(args, say) -> int:
    """`wearjax cv vo2 --data {synthetic,pyoxynet,FOLDER}`: the VO2 task's cross-validation;
    writes `DIR/metrics.json` and `DIR/report.md` and prints the table; `say` prints a note."""
    from wearjax.eval.report import write_report
    from wearjax.tasks import presets, study_state
    from wearjax.tasks.vo2 import run_vo2_study
    from wearjax.tasks.vo2_chain import run_hr_to_vo2

    data = str(args.data)
    if data in ("pyoxynet", "synthetic"):
        _own_files_only(args)
    if data == "synthetic" and args.without_clock:
        raise WearjaxError("--without-clock is for exercise tests; --data synthetic takes none")
    columns = _parse_columns(args.columns)  # its syntax, before --out is made
    # the training state is kept in --out every epoch until the report is written
    out, resume = Path(args.out), args.resume
    study_state.check(out, resume, "cv vo2 study")  # before reading any file
    made = not out.exists()
    key = {"study": "cv vo2", **{k: str(getattr(args, k)) for k in KEYED}}
    if resume:
        study_state.load(out, key, {})
    else:
        out.mkdir(parents=True, exist_ok=True)
        study_state.save(out, key, {}, {}, {})
    print(f"keeping the training state in {out} until the study ends (resume with --resume)")
    try:
        if data == "pyoxynet":
            cohort = presets.load_cpet_cohort(30 if args.quick else None)
            config = _clock(presets.cpet_config(args.quick, args.seed), args)
            results, _ = run_vo2_study(cohort, config, state_dir=out, resume=resume)
            title = "VO2 on pyoxynet's ramp tests"
        elif data == "synthetic":
            config = presets.synthetic_config(args.quick, args.seed)
            results, _ = run_hr_to_vo2(config, state_dir=out, resume=resume)
            title = "HR -> VO2 on the synthetic cohort"
        else:
            cohort, unit_note = presets.load_cpet_folder_cohort(
                Path(data), columns=columns, vo2_unit=args.vo2_unit,
                gas_inputs=args.gas_inputs, say=say,
            )  # fmt: skip
            print(unit_note)
            config = _clock(presets.folder_config(cohort.n_runners, args.quick, args.seed), args)
            results, _ = run_vo2_study(cohort, config, state_dir=out, resume=resume)
            results["data"] = {"folder": data, "vo2_unit": unit_note}
            title = f"VO2 on {data}"
    except KeyboardInterrupt as err:
        if isinstance(err, TrainingInterrupted):
            raise
        raise TrainingInterrupted(f"interrupted; the training state is kept in {out}") from None
    except WearjaxError:  # bad data before any epoch: nothing to resume
        study_state.clear_if_nothing_kept(out, made)
        raise
    print(write_report(results, out, title))
    study_state.clear(out)
    return 0


def _cohort(args, say):
    """`--data pyoxynet` or a folder of the user's CPET tests as a cohort, and its config."""
    from wearjax.tasks import presets

    data = str(args.data)
    if data == "synthetic":
        raise WearjaxError(
            "fit vo2 trains on exercise tests: --data pyoxynet or a folder of your CPET files "
            "(the synthetic HR -> VO2 chain is cross-validated by `wearjax cv vo2`)"
        )
    if data == "pyoxynet":
        _own_files_only(args)
        config = _clock(presets.cpet_config(args.quick, args.seed), args)
        return presets.load_cpet_cohort(30 if args.quick else None), config
    cohort, unit_note = presets.load_cpet_folder_cohort(
        Path(data), columns=_parse_columns(args.columns), vo2_unit=args.vo2_unit,
        gas_inputs=args.gas_inputs, say=say,
    )  # fmt: skip
    print(unit_note)
    n_val = max(1, min(4, cohort.n_runners // 5))  # as the folder's cross-validation holds out
    return cohort, _clock(
        presets.cpet_config(args.quick, args.seed, validation_subjects=n_val), args
    )


def _clock(config, args):
    """`config` without the inputs that count from the test's start (`--without-clock`)."""
    return config._replace(without=CLOCK) if args.without_clock else config


def _own_files_only(args) -> None:
    for option in ("columns", "vo2_unit", "gas_inputs"):  # they describe the user's own files
        if getattr(args, option) not in (None, False):
            flag = "--" + option.replace("_", "-")
            raise WearjaxError(
                f"{flag} describes your own CPET files; --data {args.data} takes none"
            )


def fit_command(args, say) -> int:
    """`wearjax fit vo2 --data {pyoxynet,FOLDER} --out FILE`: the VO2 model trained on every
    subject but a few held out for early stopping (`tasks.vo2_fit`); writes a checkpoint."""
    import time

    from wearjax.tasks.vo2_fit import save_vo2, train_vo2_model

    t0 = time.perf_counter()
    cohort, config = _cohort(args, say)
    print(f"training the VO2 model {config.variant} on {cohort.n_sessions} tests of "
          f"{cohort.n_runners} subjects")  # fmt: skip
    state_file = Path(f"{args.out}.state")  # checked with --resume (`check_arguments`)
    print(f"saving the training state every epoch to {state_file} (resume with --resume)")
    checkpoint = train_vo2_model(cohort, config, state_file=state_file, resume=args.resume)
    header = checkpoint.header
    header["read"] = {"columns": _parse_columns(args.columns), "vo2_unit": args.vo2_unit}
    path = save_vo2(args.out, checkpoint)
    state_file.unlink(missing_ok=True)  # the run is complete: the checkpoint holds the model
    d = header["data"]
    print(f"{d['epochs_run']} epochs, best validation MAE {d['best_validation_mae']:.0f} mL/min "
          f"on {len(d['validation_subjects'])} held-out subjects; "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    print(f"wrote {path}")
    return 0


def predict_command(args, say) -> int:
    """`wearjax predict --model VO2.wjx TEST.csv|FOLDER`: each test's VO2 from its first second
    (`tasks.vo2_fit.predict_vo2`), a CSV and a plot each, errors where the test has VO2; the
    files are read as the checkpoint's training files were (its `--columns`, `--vo2-unit`),
    each unless `--columns` / `--vo2-unit` describes these (one given keeps the other's
    training value)."""
    from wearjax.data import load_cpet_folder, read_cpet
    from wearjax.data.cpet import CPET_SUFFIXES
    from wearjax.tasks.arguments import each_predicted
    from wearjax.tasks.vo2_fit import load_vo2, predict_vo2, write_vo2_prediction

    checkpoint = load_vo2(args.model)
    read = dict(checkpoint.header.get("read") or {"columns": None, "vo2_unit": None})
    if args.columns:  # these tests' own names, not training's (its unit kept unless given)
        read["columns"] = _parse_columns(args.columns)
    if args.vo2_unit:
        read["vo2_unit"] = args.vo2_unit
    file, out = Path(args.file), Path(args.out)
    read["min_length_s"] = 1  # the model needs the first second of VO2; the rest is scored
    if file.is_dir():  # each test as read, compared with the model alone (not with the others)
        sessions, skipped = load_cpet_folder(file, **read, harmonise=False)
        for s in skipped:
            say(f"skipped {s.path}: {s.reason}")
    else:
        if file.suffix.lower() not in CPET_SUFFIXES:  # a watch's file: no VO2 to start from
            raise WearjaxError(
                f"{file}: a VO2 model predicts a CPET export ({', '.join(CPET_SUFFIXES)}) from "
                f"the VO2 of its first second, not a {file.suffix or 'suffixless'} file; "
                "predict a watch's recording with an HR model"
            )
        sessions = [read_cpet(file, **read)]
    given = {"smoothed": " (a cubic fitted to the first 15 s)", "raw": " (as measured)"}.get(
        checkpoint.header.get("first_second"), ""
    )
    for _, name, pred in each_predicted(sessions, file, lambda s: predict_vo2(checkpoint, s), say):
        line = f"{name}: {len(pred.vo2)} s from a first second of {pred.v0:.0f} mL/min{given}"
        m = pred.metrics
        if m:
            line += (f"; MAE {m['mae']:.0f} mL/min, RMSE {m['rmse']:.0f}, MAPE {m['mape']:.1f}%, "
                     f"r {m['pearson_r']:.2f} over {m['n']} s")  # fmt: skip
        print(line)
        written = write_vo2_prediction(pred, out / f"{name}.csv", out / f"{name}.png", name)
        print(f"  wrote {', '.join(str(w) for w in written)}")
    return 0
