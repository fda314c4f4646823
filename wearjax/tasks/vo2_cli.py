"""`wearjax cv vo2`: its options and the command (the table in `tasks.commands` names them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wearjax.errors import TrainingInterrupted, WearjaxError

# the options a resumed `cv vo2` must share with the interrupted one (the training state's own
# fingerprint covers the data and the model)
KEYED = ("data", "quick", "seed", "columns", "vo2_unit", "gas_inputs")


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
    for option in ("columns", "vo2_unit", "gas_inputs"):  # they describe the user's own files
        if data in ("pyoxynet", "synthetic") and getattr(args, option) not in (None, False):
            flag = "--" + option.replace("_", "-")
            raise WearjaxError(f"{flag} describes your own CPET files; --data {data} takes none")
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
            config = presets.cpet_config(args.quick, args.seed)
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
            config = presets.folder_config(cohort.n_runners, args.quick, args.seed)
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
