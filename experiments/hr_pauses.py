"""Stops in real runs: speed and cadence held through a watch's auto-pause, or read as 0.

    python experiments/hr_pauses.py [--data ../shared/data/running-csv] [--seeds 0 1 2]
        [--models kalman ode] [--out experiments/results/hr_pauses]

A watch stops recording while its runner stands (a traffic light), and HR falls through the
stop. The readers used to hold the pace before the stop through it; now, where the recorded
distance stood still, they read speed and cadence 0 (`data.readers.to_session`, `pauses`).
This measures what that changes for a trained model, with nothing else changed: one model per
kind and seed is trained (`tasks.hr_fit.train_hr`, the settings of `wearjax fit hr`) on the
runs without a stop, which read the same either way (checked), and predicts each run with a
stop twice, from the file read both ways, with the same weights. MAE over the whole run and
over the 120 s after each stop (where the model's state after the stop differs), in both
protocols, on the seconds each protocol scores. Writes `table.md` and `results.json` in
`--out`; skips, saying so, when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from wearjax.eval.protocols import given_mask
from wearjax.tasks.hr_fit import predict_hr, train_hr
from wearjax.tasks.hr_recordings import read_recordings, shared_channels
from wearjax.tasks.presets import recordings_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "running-csv"
AFTER_S = 120
"""Seconds after a stop over which its effect is scored."""


def after_stops(session, seconds: int = AFTER_S) -> np.ndarray:
    """The `seconds` after each stop of the stop-reading `session` (speed 0 through a gap
    with no HR), as a mask over the session."""
    speed = session.x[:, session.channels.index("speed")]
    stopped = (speed == 0) & ~session.mask
    ends = np.flatnonzero(stopped[:-1] & ~stopped[1:]) + 1
    out = np.zeros(session.length, bool)
    for end in ends:  # a handful of stops per run
        out[end : end + seconds] = True
    return out & session.mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of running recordings")
    parser.add_argument("--models", nargs="+", default=["kalman", "ode"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/results/hr_pauses")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: no running recordings at {args.data} (pass --data FOLDER)")
        return 0
    t0 = time.perf_counter()
    read = {p: read_recordings(args.data, require_hr=True, pauses=p)[0] for p in ("stop", "hold")}
    read = {p: shared_channels(s)[0] for p, s in read.items()}
    stops = [int(dict(s.metadata).get("stopped_s", 0)) > 0 for s in read["stop"]]
    train = [s for s, stop in zip(read["stop"], stops, strict=True) if not stop]
    for a, b, stop in zip(read["stop"], read["hold"], stops, strict=True):
        if not stop:  # no stop: the two readings are one
            np.testing.assert_array_equal(a.x, b.x)
    tests = {p: [s for s, stop in zip(read[p], stops, strict=True) if stop] for p in read}
    n_stop_s = sum(int(dict(s.metadata)["stopped_s"]) for s in tests["stop"])
    print(f"{len(train)} runs without a stop to train on; {len(tests['stop'])} runs with "
          f"{n_stop_s} s of stops to predict")  # fmt: skip
    rows = []
    for kind in args.models:
        for seed in args.seeds:
            config = recordings_config(kind, False, seed=seed)
            hidden, layers = config.models[0][1:]
            fit = train_hr(train, kind, hidden, layers, config)
            for p, sessions in tests.items():
                for session, reference in zip(sessions, tests["stop"], strict=True):
                    pred = predict_hr(fit.model, fit.normalizer, fit.header, session)
                    after = after_stops(reference)
                    for protocol in ("standard", "generative"):
                        given = given_mask(jnp.asarray(reference.mask), fit.model.window, protocol)
                        scored = after & ~np.asarray(given)
                        err = np.abs(getattr(pred, protocol) - pred.hr)
                        rows.append(dict(
                            kind=kind, seed=seed, pauses=p, run=session.workout,
                            protocol=protocol, mae=pred.metrics[protocol]["mae"],
                            after=float(np.mean(err[scored])), n_after=int(scored.sum()),
                        ))  # fmt: skip
            print(f"{kind} seed {seed}: done ({time.perf_counter() - t0:.0f} s)")
    table = _table(rows, args)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/hr_pauses.py " + shlex.join(sys.argv[1:])
    minutes = (time.perf_counter() - t0) / 60
    text = (f"# Stops read as stops, or held\n\nCommand: `{command.strip()}`; {minutes:.0f} min "
            f"on {platform.machine()} ({len(train)} runs trained on, {len(tests['stop'])} runs "
            f"with {n_stop_s} s of stops predicted).\n\n{table}\n")  # fmt: skip
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


def _table(rows: list[dict], args) -> str:
    """MAE per kind, protocol and reading: mean +- SD over seeds of the mean over runs."""

    def stat(kind, protocol, pauses, key):
        per_seed = [
            np.mean(
                [
                    r[key]
                    for r in rows
                    if (r["kind"], r["seed"], r["protocol"], r["pauses"])
                    == (kind, seed, protocol, pauses)
                ]
            )  # fmt: skip
            for seed in args.seeds
        ]
        return np.mean(per_seed), np.std(per_seed)

    lines = [
        f"MAE (bpm), mean over the runs with a stop, mean +- SD over seeds {args.seeds}:",
        "",
        f"| model | protocol | whole run, held | whole run, stop | {AFTER_S} s after a stop, "
        f"held | {AFTER_S} s after a stop, stop |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in args.models:
        for protocol in ("standard", "generative"):
            cells = [
                "{:.2f} +- {:.2f}".format(*stat(kind, protocol, p, key))
                for key in ("mae", "after")
                for p in ("hold", "stop")
            ]
            lines.append(f"| {kind} | {protocol} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
