"""What several benchmark scripts share: the HR models at the published sizes, the machine's
description, and writing a results file (imported by scripts run as `python benchmarks/X.py`,
whose folder is then on `sys.path`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp

from wearjax.models.hr_personalized import PersonalHRODE
from wearjax.tasks.hr import build_model

WINDOW = 60


def hr_models(key) -> dict:
    """`{name: (model, number of inputs)}`: the HR Kalman filter and the HR neural ODE at the
    published (128, 2) size on 4 features, and one runner's personalised ODE (scan engine, its
    default) on its 2 activity inputs."""
    k1, k2, k3 = jax.random.split(key, 3)
    personal = PersonalHRODE(16, 8, 32, window=WINDOW, engine="scan", key=k3)
    return {
        "Kalman (128, 2)": (build_model("kalman", 4, 128, 2, window=WINDOW, key=k1), 4),
        "ODE (128, 2)": (build_model("ode", 4, 128, 2, window=WINDOW, key=k2), 4),
        "personalised ODE": (personal.for_runner(jnp.zeros(8)), 2),
    }


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def device_name() -> str:
    """JAX's first device: "CPU", or its platform and kind (e.g. "gpu, NVIDIA H100 80GB HBM3")."""
    device = jax.devices()[0]
    return "CPU" if device.platform == "cpu" else f"{device.platform}, {device.device_kind}"


def machine() -> str:
    text = f"{platform.machine()}, {cores()} CPU cores, jax {jax.__version__}"
    return text if device_name() == "CPU" else f"{text}, on {device_name()}"


def write_results(out: Path, title: str, intro: str, *blocks: list[str]) -> None:
    """`# title`, the `intro` paragraph and each block of lines (tables), to `out`."""
    lines = [f"# {title}", "", intro, ""]
    for block in blocks:
        lines += [*block, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
