"""How far the speed the GPX reader takes from positions is from the watch's own speed, for
several spans of `wearjax.data.channels.speed_from_distance`.

    python experiments/running_csv_as_fit_tcx.py --out /tmp/runs --gps-noise 2
    python experiments/gpx_speed.py --runs /tmp/runs [--spans 1 4 6 10 16] [--out FILE.md]

Each shared running CSV is read as the watch recorded it (`enhanced_speed`, the watch's
filtered speed), and its GPX copies (`gpx`: laid along a meridian at the recorded distance;
`gpx_noisy`: with a drifting GPS error) are read with the speed taken from the distance over
each span (1 s: the change from one point to the next). Prints, per copy and span, the RMS
difference (m/s) from the watch's speed, second by second (median and mean over runs), and
the SD of the speed itself beside the watch's over the same seconds; `--pauses hold`
throughout, so the seconds line up. A run whose copy shares no second with the watch's speed
is left out of its row, and counted.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from wearjax.data import channels
from wearjax.data.csv import read_running_csv
from wearjax.data.gpx import read_gpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "running-csv"


def _speed(session) -> np.ndarray:
    return session.x[:, session.channels.index("speed")].astype(float)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared running CSVs")
    parser.add_argument("--runs", type=Path, required=True, help="the converter's --out")
    parser.add_argument("--spans", type=float, nargs="+", default=[1.0, 4.0, 6.0, 10.0, 16.0])
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    files = sorted(args.data.glob("*.csv"))
    kinds = [k for k in ("gpx", "gpx_noisy") if (args.runs / k).is_dir()]
    if not files or not kinds:
        print(f"skipped: no running CSVs at {args.data} or no GPX copies under {args.runs}")
        return 0
    watch = [_speed(read_running_csv(f, pauses="hold")) for f in files]
    lines = [
        f"Command: `python experiments/gpx_speed.py --runs {args.runs} --spans "
        f"{' '.join(f'{s:g}' for s in args.spans)}`; {len(files)} runs.",
        "",
        "| copy | span (s) | RMS from the watch's speed, median (m/s) | mean | speed SD | "
        "the watch's speed SD, same seconds | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        for span in args.spans:
            # every reader that takes speed from a distance uses this span, for this row
            spanned = functools.partial(channels.speed_from_distance, span_s=span)
            rms, sd, sd_watch = [], [], []
            with mock.patch.object(channels, "speed_from_distance", spanned):
                for f, w in zip(files, watch, strict=True):
                    stem = f.name.removesuffix(".csv").removesuffix(".fit")
                    (g,) = read_gpx(args.runs / kind / f"{stem}.gpx", pauses="hold")
                    v = _speed(g)
                    n = min(len(v), len(w))
                    ok = np.isfinite(v[:n]) & np.isfinite(w[:n])
                    if not ok.any():
                        continue
                    rms.append(np.sqrt(np.mean((v[:n][ok] - w[:n][ok]) ** 2)))
                    sd.append(np.std(v[:n][ok]))
                    sd_watch.append(np.std(w[:n][ok]))
            lines.append(
                f"| {kind} | {span:g} | {np.median(rms):.3f} | {np.mean(rms):.3f} | "
                f"{np.mean(sd):.3f} | {np.mean(sd_watch):.3f} | {len(rms)} of {len(files)} |"
            )
            print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
