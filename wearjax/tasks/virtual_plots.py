"""Plots of the virtual-sensing study: for one held-out session (fold 0's most severe), the
ACC and PPG spectra as the models see them, the virtual PPG the VAE decodes from ACC and the
refiner's gate, with the true HR drawn over them, and every setting's HR track."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wearjax.cv import Split
from wearjax.models.virtual import GRID_BPM
from wearjax.tasks.virtual import device_data, predict
from wearjax.tasks.virtual_data import HOP_S, WINDOW_S, SpectralSessions


def _session(s: SpectralSessions, split: Split) -> int:
    """Fold 0's most severe test session, among those with ACC and PPG where it has any."""
    rows = np.flatnonzero(split.test[0])
    both = rows[s.with_acc[rows] & s.with_ppg[rows]]
    rows = both if both.size else rows
    sev = np.nan_to_num(s.severity[rows], nan=-1.0)
    return int(rows[np.argmax(sev)])


def plot_session(
    s: SpectralSessions, split: Split, tracks: dict, model, config, folder: Path
) -> list[Path]:
    """Writes `folder/spectra.png` (when `model` is the virtual setting's fold-0 model) and
    `folder/hr_tracks.png`; returns the paths. `config`: the study's `VirtualConfig`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    i = _session(s, split)
    n = int(s.n_windows[i])
    t = (np.arange(n) * HOP_S + WINDOW_S / 2) / 60.0  # window centres, minutes
    ok = s.ok[i, :n]
    true = np.where(ok, s.hr[i, :n], np.nan)
    written = []
    title = f"{s.names[i]} (severity {s.severity[i]:.2f})"
    if model is not None:
        data = device_data(s, floor_db=config.floor_db)  # the spectra as the models see them
        out = predict(model, None, data, i, context=config.context)
        panels = [
            ("ACC spectrum (max over axes)", np.asarray(data.acc[i, :n]).max(-1)),
            ("PPG spectrum", np.asarray(data.ppg[i, :n, :, 0])),
            ("virtual PPG (decoded from ACC)", np.asarray(out.virtual_ppg)[:n]),
            ("refiner gate", np.asarray(out.gate)[:n]),
        ]
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, 10), sharex=True)
        extent = (t[0], t[-1], GRID_BPM[0], GRID_BPM[-1])
        for ax, (label, img) in zip(axes, panels, strict=True):
            ax.imshow(img.T, aspect="auto", origin="lower", extent=extent, cmap="magma")
            ax.plot(t, true, color="cyan", lw=0.8, label="true HR")
            ax.set_ylabel("bpm")
            ax.set_title(label, fontsize=9)
        axes[0].legend(loc="upper right", fontsize=8)
        axes[-1].set_xlabel("minutes")
        fig.suptitle(title)
        fig.tight_layout()
        written.append(folder / "spectra.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t, true, color="black", lw=1.5, label="reference")
    for name, hr in tracks.items():
        ax.plot(t, np.where(ok, hr[i, :n], np.nan), lw=0.9, label=name)
    ax.set_xlabel("minutes")
    ax.set_ylabel("HR (bpm)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    written.append(folder / "hr_tracks.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)
    return written
