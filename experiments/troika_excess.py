"""The TROIKA-style tracker's `excess` factor on the virtual-sensing study's simulated sessions.

`signal.peaks.remove_motion_peaks` keeps an ACC-claimed line that the PPG holds at more than
`excess` times the height, relative to the ACC's, of the window's most motion-like line (the
pulse shares it). This script runs `troika_hr` on the study's sessions (`wearjax cv virtual
--data synthetic`, the same simulator, seed and spectra) for several factors, `none` zeroing
every dominant line, and prints the MAE over the scored windows, the heavy-motion band's and
the worst session's. No learning: every session is scored, windows before a session's first
usable PPG (no estimate yet) left out.

    python experiments/troika_excess.py --out experiments/results/troika_excess.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.signal.peaks import troika_hr
from wearjax.tasks.virtual import GRID_HZ
from wearjax.tasks.virtual_study import SEVERITY_BANDS, synthetic_sessions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--excess", nargs="+", default=["none", "1.25", "1.5", "2", "3", "4", "8"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    s = synthetic_sessions(False, seed=args.seed)
    grid = np.asarray(GRID_HZ)
    acc = jnp.moveaxis(jnp.asarray(s.acc * s.acc_scale[:, :, None, :]), -1, -2)  # [S, W, 3, F]
    ppg, ok = jnp.asarray(s.ppg[..., 0]), jnp.asarray(s.ppg_ok)
    lo, hi = SEVERITY_BANDS["heavy"]
    heavy = (s.severity >= lo) & (s.severity < hi)
    lines = ["| excess | MAE (bpm) | heavy motion | worst session |", "|---:|---:|---:|---:|"]
    for name in args.excess:
        factor = None if name == "none" else float(name)
        run = jax.vmap(lambda p, a, o, f=factor: troika_hr(p, a, grid, ok=o, excess=f))
        hr = np.asarray(run(ppg, acc, ok))
        err = np.where(s.ok & np.isfinite(hr), np.abs(hr - s.hr), np.nan)
        worst = np.nanmax(np.nanmean(err, axis=1))
        lines.append(
            f"| {name} | {np.nanmean(err):.2f} | {np.nanmean(err[heavy]):.2f} | {worst:.1f} |"
        )
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
