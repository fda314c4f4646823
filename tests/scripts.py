"""Loading a benchmark or experiment script as a module in the tests (`benchmarks/` and
`experiments/` hold scripts, not packages), and running a script on several virtual CPU
devices in a subprocess."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str):
    """`ROOT/folder/name.py` as the module `name` (once per process). The benchmark scripts
    import `benchmarks/common.py` by its bare name, so that one is loaded first."""
    if name in sys.modules:
        return sys.modules[name]
    if folder == "benchmarks" and name != "common":
        load_script(folder, "common")
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # no half-loaded module for the next caller
        raise
    return module


def run_on_devices(script: str, devices: int, timeout: float = 300) -> str:
    """Run `script` in a fresh Python with `devices` virtual CPU devices (their count is fixed
    when JAX starts; the repository root on its path, so it can import `tests.scripts`) and
    return its stdout; a failed run fails the test with its stderr."""
    flags = f"--xla_force_host_platform_device_count={devices}"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": path},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout
