"""Where the test suite's time goes: XLA compiles per test, as a pytest plugin.

Run the fast suite with it loaded, from a cold compilation cache (as CI starts):

    rm -rf /tmp/xla-cold
    WEARJAX_TEST_XLA_CACHE=/tmp/xla-cold WEARJAX_SUITE_COMPILES=/tmp/compiles \\
        python -m pytest -q -n 2 --dist loadfile -m "not slow" -p benchmarks.suite_compiles
    python benchmarks/suite_compiles.py /tmp/compiles      # the tables

Each pytest process writes `DIR/<worker>.json`: per test id, the number of programs XLA
compiled while it ran, their compile seconds (JAX's backend-compile event) and the test's wall
seconds (setup, call and teardown), and `DIR/<worker>.programs.json`: per program name
(`jit(_uniform)`, `jit(loss)`, ...) how many compiled and their seconds, over the whole run
(the name JAX reports with each compile event). Programs found in the persistent cache are
not counted: the cache is what the two workers share. Many compiles in one test usually mean
operations run eagerly, one program each (a finite difference loop, a model built or run
outside `jit`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import pytest

_EVENT = "/jax/core/compile/backend_compile_duration"
_current: dict[str, str | None] = {"id": None}
_stats: dict[str, list[float]] = {}
_programs: dict[str, list[float]] = {}


def _listener(event: str, duration: float, fun_name: str = "?", **_) -> None:
    if event != _EVENT:
        return
    program = _programs.setdefault(fun_name, [0, 0.0])
    program[0] += 1
    program[1] += duration
    if _current["id"] is not None:
        entry = _stats.setdefault(_current["id"], [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += duration


def pytest_configure(config) -> None:
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_listener)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current["id"] = item.nodeid
    start = time.perf_counter()
    yield
    _stats.setdefault(item.nodeid, [0, 0.0, 0.0])[2] = time.perf_counter() - start
    _current["id"] = None


def pytest_sessionfinish(session) -> None:
    folder = Path(os.environ.get("WEARJAX_SUITE_COMPILES", "suite-compiles"))
    folder.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if worker == "main" and not _stats:  # the xdist controller runs no tests
        return
    (folder / f"{worker}.json").write_text(json.dumps(_stats))
    (folder / f"{worker}.programs.json").write_text(json.dumps(_programs))


def summarise(folder: Path, top: int) -> str:
    stats: dict[str, list[float]] = {}
    programs: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".programs.json"):
            for name, (n, c) in json.loads(path.read_text()).items():
                programs[name][0] += n
                programs[name][1] += c
        else:
            stats.update(json.loads(path.read_text()))
    if not stats:
        raise SystemExit(f"{folder}: no <worker>.json files; run pytest with this plugin first")
    wall = sum(v[2] for v in stats.values())
    compile_s = sum(v[1] for v in stats.values())
    count = int(sum(v[0] for v in stats.values()))
    lines = [
        f"{len(stats)} tests: {wall / 60:.1f} min of test time (all workers), "
        f"{compile_s / 60:.1f} min XLA compiling ({compile_s / wall:.0%}), {count} programs",
        "",
        "| file | wall (s) | compile (s) | programs |",
        "|---|---:|---:|---:|",
    ]
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for test, (n, c, w) in stats.items():
        entry = files[test.split("::")[0]]
        entry[0] += n
        entry[1] += c
        entry[2] += w
    for name, (n, c, w) in sorted(files.items(), key=lambda kv: -kv[1][2])[:top]:
        lines.append(f"| {name} | {w:.1f} | {c:.1f} | {int(n)} |")
    lines += ["", "| test | wall (s) | compile (s) | programs |", "|---|---:|---:|---:|"]
    for test, (n, c, w) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]:
        lines.append(f"| {test} | {w:.1f} | {c:.1f} | {int(n)} |")
    if programs:
        lines += ["", "| program | compiles | compile (s) |", "|---|---:|---:|"]
        for name, (n, c) in sorted(programs.items(), key=lambda kv: -kv[1][1])[:top]:
            lines.append(f"| `{name}` | {int(n)} | {c:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="WEARJAX_SUITE_COMPILES of the pytest run")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    args = parser.parse_args()
    print(summarise(args.folder, args.top))


if __name__ == "__main__":
    main()
