"""The command-line face of each task: `TASKS[task][command]` is a `Command` whose `arguments`
adds its options to an argparse parser and whose `run(args)` does the work and returns the exit
code. `wearjax.cli` builds its sub-commands from this table (`wearjax cv TASK`, `wearjax fit
TASK`) beside `demo` and `predict`; a new task adds its entries here.

Every problem is one line on stderr (`say`); skipped files are listed and the work goes on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from wearjax.errors import TrainingInterrupted, WearjaxError
from wearjax.tasks.arguments import each_predicted, epochs, share


class Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    folds: bool = True  # trains folds through `cv.fit_folds`, so `--mesh` can shard it
    processes: bool = False  # shares its folds between processes (`--distributed`)
    quick: bool = True  # has a `--quick` preset (a probe trains no network: it has none)


def say(line: str) -> None:
    """One line on stderr per problem: a message never spans lines."""
    print("wearjax: " + " ".join(str(line).split()), file=sys.stderr)


# -- demo ------------------------------------------------------------------------------------


def demo(args) -> int:
    """`wearjax demo`: simulate a cohort, cross-validate the HR models, print Table 1."""
    import jax

    from wearjax.data.synthetic import simulate_cohort
    from wearjax.sharding import check_fold_layout
    from wearjax.tasks.hr_study import run_hr_study
    from wearjax.tasks.presets import demo_config

    t0 = time.perf_counter()
    cohort_args, config = demo_config(args.quick, args.seed)
    check_fold_layout(-(-cohort_args["n_runners"] // config.runners_out))  # before simulating
    cohort = simulate_cohort(jax.random.key(args.seed), **cohort_args)
    print(f"simulated {cohort.n_sessions} sessions of {cohort.n_runners} runners "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    results, predictions = run_hr_study(cohort, config, progress=True)
    preset = "quick" if args.quick else "full"
    results["demo"] = {"preset": preset, "seed": args.seed, "seconds": time.perf_counter() - t0}
    _hr_outputs(results, predictions, args.out)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


def _hr_outputs(results, predictions, out: Path, header: str = "") -> None:
    """Write metrics.json, report.md (`header` under its title) and the plots, and print
    Table 1. In a run of several processes (`--distributed`) every process holds the whole
    cross-validation and only process 0 writes."""
    import jax

    from wearjax.eval.report import cohort_line, table_1, write_outputs

    rank = jax.process_index()
    if rank == 0:
        written = ", ".join(str(w) for w in write_outputs(results, predictions, out))
        if header:
            title, _, rest = (out / "report.md").read_text().partition("\n")
            (out / "report.md").write_text(f"{title}\n\n{header}\n{rest}")
    print(f"\n{cohort_line(results)}\n\n{table_1(results)}")
    print(f"wrote {written}" if rank == 0 else f"process {rank}: process 0 writes {out}")


# -- HR on the user's recordings -------------------------------------------------------------


def units(args) -> dict[str, str] | None:
    """The units `--speed-unit` / `--cadence-unit` declare for the recordings (None: defaults)."""
    declared = {k: getattr(args, f"{k}_unit") for k in ("speed", "cadence")}
    return {k: v for k, v in declared.items() if v is not None} or None


def unit_arguments(p: argparse.ArgumentParser) -> None:
    """`--speed-unit` and `--cadence-unit`, the reader options the unit errors name, and
    `--pauses`."""
    p.add_argument(
        "--speed-unit", choices=("m/s", "km/h", "mph"),
        help="speed unit of CSV runs (default m/s; FIT and TCX are always m/s)",
    )  # fmt: skip
    p.add_argument(
        "--cadence-unit", choices=("strides/min", "steps/min"),
        help="cadence unit of the recordings (default strides/min, as FIT records it)",
    )  # fmt: skip
    p.add_argument(
        "--pauses", choices=("stop", "hold"),
        help="a pause in the records over which the distance stood still: 'stop' reads speed "
        "and cadence 0 through it, 'hold' the last values (as before 2026-12-06); default "
        "stop, and for predict the reading the checkpoint was trained on",
    )  # fmt: skip


def _recordings(data: Path, *, require_hr: bool, args):
    """Sessions of a folder or file, read with the reader options of `args` (`unit_arguments`),
    on the raw channels all of them share; each skipped file and dropped channel is reported
    on its own line."""
    from wearjax.tasks.hr_recordings import read_recordings, shared_channels

    sessions, skipped = read_recordings(
        data, require_hr=require_hr, units=units(args), pauses=args.pauses or "stop"
    )
    for s in skipped:
        say(f"skipped {s.path}: {s.reason}")
    reader_notes(sessions)
    sessions, notes = shared_channels(sessions)
    for note in notes:
        say(note)
    return sessions


def reader_notes(sessions) -> None:
    """One line per reader note that changes what the models see (masked HR, records dropped
    out of time order)."""
    notes = {"hr_out_of_range": "{} heart rates outside 25-250 bpm masked (not used)",
             "records_out_of_order": "{} records dropped out of time order"}  # fmt: skip
    for s in sessions:
        for key, note in notes.items():
            if (n := dict(s.metadata).get(key)) is not None:
                say(f"{s.source or s.workout}: {note.format(n)}")


def _hr_arguments(p: argparse.ArgumentParser) -> None:
    from wearjax.tasks.hr import HR_MODELS
    from wearjax.tasks.presets import DEFAULT_NORMALISE, NORMALISE

    p.add_argument("--model", choices=sorted(HR_MODELS), default="kalman", help="HR model kind")
    p.add_argument("--data", type=Path, required=True, help="a folder of recordings, or a file")
    p.add_argument(
        "--normalise", choices=NORMALISE, default=DEFAULT_NORMALISE,
        help="'session': standardise the device-dependent running dynamics (vertical "
        "oscillation, stance time, vertical ratio, step length, altitude) by each recording's "
        "own mean and SD, so another watch's offsets cancel; 'fold': the training folds' "
        f"statistics only (default {DEFAULT_NORMALISE})",
    )  # fmt: skip
    unit_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (fit: "
                   "from OUT.state; cv: the study kept in OUT), same data, settings")  # fmt: skip


def normalisation_line(config) -> str:
    """How the HR inputs are normalised (`--normalise`), in one line."""
    if not config.session_relative:
        return "Normalisation: the training folds' statistics (--normalise fold)"
    return (
        "Normalisation: device features standardised per recording where present ("
        + ", ".join(config.session_relative)
        + "; --normalise session), then the training folds' statistics"
    )


def cv_hr(args) -> int:
    """`wearjax cv hr`: cross-validate HR models of one kind on the user's recordings."""
    import jax

    from wearjax.sharding import check_fold_layout
    from wearjax.tasks import study_state
    from wearjax.tasks.hr_recordings import cv_cohort
    from wearjax.tasks.hr_study import run_hr_study
    from wearjax.tasks.presets import check_segments, recordings_config

    t0 = time.perf_counter()
    # the study's progress is kept in --out for --resume; by one process only
    out = args.out if jax.process_count() == 1 else None
    if out is None and args.resume:
        raise WearjaxError("--resume continues a study of one process; run without --distributed")
    if out is not None:
        study_state.check(out, args.resume, "cv hr study")  # before reading any file
    made = out is not None and not Path(out).exists()
    sessions = _recordings(args.data, require_hr=True, args=args)
    config = recordings_config(args.model, args.quick, seed=args.seed, normalise=args.normalise)
    check_segments(sessions, args.model, args.quick, 1)
    cohort, k, folds = cv_cohort(sessions, config.window)
    check_fold_layout(-(-cohort.n_runners // k))  # before any model is built
    config = config._replace(runners_out=k)
    print(f"read {len(sessions)} sessions ({', '.join(cohort.channels)}); {folds}")
    print(normalisation_line(config))
    if out is not None:
        print(f"keeping the study's progress in {out} until it ends (resume with --resume)")
    try:
        results, predictions = run_hr_study(cohort, config, progress=True, out=out,
                                            resume=args.resume)  # fmt: skip
    except KeyboardInterrupt:
        if out is None or not study_state.exists(out):
            raise
        raise TrainingInterrupted(f"interrupted; the study's progress is kept in {out}") from None
    except WearjaxError:  # bad data before any epoch: nothing to resume
        if out is not None:
            study_state.clear_if_nothing_kept(out, made)
        raise
    results["folds"]["how"] = folds
    results["cv"] = {"data": str(args.data), "kind": args.model, "quick": args.quick,
                     "seed": args.seed, "seconds": time.perf_counter() - t0}  # fmt: skip
    header = f"Data: `{args.data}`. Folds: {folds}. {normalisation_line(config)}."
    _hr_outputs(results, predictions, args.out, header)
    if out is not None:
        study_state.clear(out)
    return 0


def fit_hr(args) -> int:
    """`wearjax fit hr`: train one HR model on every session and write a checkpoint."""
    from wearjax.tasks.hr_fit import train_hr
    from wearjax.tasks.presets import check_segments, recordings_config
    from wearjax.train.checkpoints import save_hr

    t0 = time.perf_counter()
    sessions = _recordings(args.data, require_hr=True, args=args)
    config = recordings_config(args.model, args.quick, seed=args.seed, normalise=args.normalise)
    check_segments(sessions, args.model, args.quick, 2)
    hidden, layers = config.models[0][1:]
    print(f"training {args.model} ({hidden}, {layers}) on {len(sessions)} sessions "
          f"({', '.join(sessions[0].channels)})")  # fmt: skip
    print(normalisation_line(config))
    state_file = Path(f"{args.out}.state")  # checked with --resume (`check_arguments`)
    print(f"saving the training state every epoch to {state_file} (resume with --resume)")
    trained = train_hr(
        sessions, args.model, hidden, layers, config, progress=args.model,
        state_file=state_file, resume=args.resume,
    )  # fmt: skip
    header = trained.header | {"pauses": args.pauses or "stop"}  # predict reads files alike
    path = save_hr(args.out, trained.model, trained.normalizer, header)
    state_file.unlink(missing_ok=True)  # the run is complete: the checkpoint holds the model
    d = trained.header["data"]
    print(
        f"{d['epochs_run']} epochs, best validation loss {d['best_validation_loss']:.3f} on "
        f"{len(d['validation_sessions'])} held-out sessions; {time.perf_counter() - t0:.0f} s"
    )
    print(f"wrote {path}")
    return 0


def predict(args) -> int:
    """`wearjax predict`: HR of one recording in both protocols, with errors where it has HR."""
    from wearjax.tasks.hr_fit import predict_hr, write_prediction
    from wearjax.tasks.hr_recordings import read_recordings
    from wearjax.train.checkpoints import load_hr, read_header

    task = read_header(args.model)[0].get("task")
    if task != "vo2" and (args.columns or args.vo2_unit):
        raise WearjaxError("--columns and --vo2-unit describe CPET tests, for VO2 checkpoints")
    if task in ("virtual", "vo2"):  # HR per window from wrist spectra; VO2 of CPET tests
        from wearjax.tasks import virtual_io, vo2_cli

        if args.hr0 is not None or units(args) or args.pauses is not None:
            kind = {"virtual": "virtual-sensing", "vo2": "VO2"}[task]
            raise WearjaxError(f"--hr0, --speed-unit, --cadence-unit and --pauses are for HR "
                               f"checkpoints (running files); a {kind} model reads none"
                               )  # fmt: skip
        return (virtual_io if task == "virtual" else vo2_cli).predict_command(args, say)
    model, normalizer, header = load_hr(args.model)
    pauses = args.pauses or header.get("pauses", "stop")  # read as its training data were
    sessions, skipped = read_recordings(args.file, require_hr=False, units=units(args),
                                        pauses=pauses)  # fmt: skip
    for s in skipped:
        say(f"skipped {s.path}: {s.reason}")
    reader_notes(sessions)
    file, out = args.file, args.out
    predicted = each_predicted(
        sessions, file, lambda s: predict_hr(model, normalizer, header, s, hr0=args.hr0), say
    )
    for session, name, pred in predicted:
        print(f"{name}: {len(pred.hr)} s, generative start {pred.hr0:.0f} bpm")
        for protocol in ("standard", "generative"):
            m = pred.metrics.get(protocol)
            if m:
                print(f"  {protocol:<10} MAE {m['mae']:5.2f} bpm  RMSE {m['rmse']:5.2f} bpm  "
                      f"r {m['pearson_r']:.2f}  over {m['n']:.0f} s")  # fmt: skip
            elif protocol == "standard":
                print("  standard   not run: the file has no heart rate to start each window")
        written = write_prediction(
            pred, out / f"{name}.csv", out / f"{name}.png", name, session.start_time_s
        )
        print(f"  wrote {', '.join(str(w) for w in written)}")
    return 0


# -- VO2 (the command lives in tasks.vo2_cli) -------------------------------------------------


def _vo2_arguments(p: argparse.ArgumentParser) -> None:
    from wearjax.tasks.vo2_cli import arguments

    arguments(p)


def vo2(args) -> int:
    """`wearjax cv vo2` and `fit vo2` (`tasks.vo2_cli`)."""
    from wearjax.tasks import vo2_cli

    return (vo2_cli.cv_command if args.command == "cv" else vo2_cli.fit_command)(args, say)


# -- activity recognition ---------------------------------------------------------------------


def _har_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=epochs, help="training epochs (default: 25 quick, 60 full)")
    p.add_argument("--resume", action="store_true", help="keep the models an earlier run with "
                   "the same settings wrote to OUT/metrics.json; train the rest")  # fmt: skip


def report_har(args) -> int:
    """`wearjax report har` (`tasks.har_study.report_command`)."""
    from wearjax.tasks.har_study import report_command

    return report_command(args)


# -- the channel-aware transformer ------------------------------------------------------------

PROBE_DATA = ("pyoxynet_domain", "basic_motions", "watch")


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", choices=("tiny", "small", "base"), help="default small (--quick tiny)")
    p.add_argument("--epochs", type=epochs, help="pretraining epochs (default 30; quick 4)")
    p.add_argument("--corpus", choices=("synthetic", "cpet", "both", "wrist"), default="synthetic",
                   help="simulated 1 Hz physiology, pyoxynet's resting tests, both, or the "
                   "simulated wrist at 25 Hz")  # fmt: skip
    p.add_argument("--masking", choices=("random", "time", "scale", "mixed", "inpaint"),
                   default="mixed", help="hide patches at random, time columns, scale rows, a mix "
                   "of those, or time columns in the signal itself (no leak)")  # fmt: skip
    p.add_argument("--mask-ratio", type=share, default=0.8, help="share of patches hidden")
    p.add_argument("--validation", choices=("recordings", "windows"), default="recordings",
                   help="stop early on held-out recordings, or random windows (old)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from OUT.state")


def fit_pretrain(args) -> int:
    """`wearjax fit pretrain`: masked pretraining on the corpus `--corpus` names
    (`tasks.pretrain.named_corpus`); writes the encoder checkpoint."""
    from wearjax.tasks.pretrain import check_grid, named_corpus, pretrain, save_encoder

    corpus, config = named_corpus(args.corpus, args.seed, args.quick)
    size = args.size or ("tiny" if args.quick else "small")
    config = config._replace(
        size=size,
        seed=args.seed,
        masking=args.masking,
        validation=args.validation,
        mask_ratio=args.mask_ratio,
    )
    try:  # before anything is compiled: the grid is the corpus's
        check_grid(config, corpus.x.shape[-1])
    except ValueError as err:
        raise WearjaxError(f"--mask-ratio {args.mask_ratio:g}: {err}") from None
    epochs = args.epochs or (4 if args.quick else config.train.epochs)
    config = config._replace(train=config.train._replace(epochs=epochs))
    say(f"pretraining {config.size} at {config.nominal_rate:g} Hz on {corpus.x.shape[0]} "
        f"{args.corpus} windows; compiling first")  # fmt: skip
    state_file = Path(f"{args.out}.state")  # checked with --resume (`check_arguments`)
    say(f"saving the training state every epoch to {state_file} (resume with --resume)")
    result = pretrain(
        corpus, config, progress="pretraining", state_file=state_file, resume=args.resume
    )
    save_encoder(args.out, result.model, config)
    state_file.unlink(missing_ok=True)  # the run is complete: the encoder file holds it
    say(f"best validation loss {min(result.history['val_loss']):.4f}; wrote {args.out}")
    return 0


def _probe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", type=Path, required=True, help="checkpoint of `fit pretrain`")
    p.add_argument("--data", required=True, help="the labelled windows: " + ", ".join(PROBE_DATA)
                   + ", or an NPZ file of your own (x, y, rate; subject or train)")  # fmt: skip
    scarce = "a label-scarce probe: fit each fold's probes on only this many subjects' windows"
    p.add_argument("--labelled", type=int, help=scarce + " (not basic_motions)")
    p.add_argument("--draws", type=int, help="with --labelled: draws of the subjects (5)")
    p.add_argument("--no-minirocket", action="store_true", help="leave out the MiniRocket row")


def cv_probe(args) -> int:
    """`wearjax cv probe` (`tasks.probe.probe_command`)."""
    from wearjax.tasks.probe import probe_command

    return probe_command(args, say)


# -- virtual sensing ---------------------------------------------------------------------------


def _virtual_arguments(p: argparse.ArgumentParser) -> None:
    from wearjax.tasks.virtual_io import arguments

    arguments(p)


def virtual(args) -> int:
    """`wearjax cv virtual` (`tasks.virtual_study`) and `fit virtual` (`tasks.virtual_io`)."""
    from wearjax.tasks import virtual_io, virtual_study

    return (virtual_study.cv_command if args.command == "cv" else virtual_io.fit_command)(args, say)


TASKS: dict[str, dict[str, Command]] = {
    "hr": {
        "cv": Command("HR models on your recordings, both protocols", _hr_arguments, cv_hr,
                      processes=True),
        "fit": Command("an HR model on all your recordings; writes a checkpoint",
                       _hr_arguments, fit_hr, folds=False),
    },
    "vo2": {
        "cv": Command("the VO2 model: synthetic, pyoxynet or your CPET files", _vo2_arguments,
                      vo2),
        "fit": Command("the VO2 model on pyoxynet's or your CPET tests; writes a checkpoint",
                       _vo2_arguments, vo2, folds=False),
    },
    "pretrain": {
        "fit": Command("masked pretraining of the channel-aware transformer; writes the encoder",
                       _pretrain_arguments, fit_pretrain, folds=False),
    },
    "probe": {
        "cv": Command("linear probe of a pretrained encoder on labelled windows",
                      _probe_arguments, cv_probe, folds=False, quick=False),
    },
    "virtual": {
        "cv": Command("HR from wrist ACC, virtual PPG, PPG and fusion, with references",
                      _virtual_arguments, virtual),
        "fit": Command("a virtual-sensing model on all your recordings; writes a checkpoint",
                       _virtual_arguments, virtual, folds=False),
    },
    "har": {
        "report": Command("activity recognition on BasicMotions and seglearn's watch set, "
                          "baselines, ablations and the edge report", _har_arguments, report_har),
    },
}  # fmt: skip
