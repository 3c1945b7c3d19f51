"""The default run against its floor: the same cases and backend calls in a plain loop, side by side.

Run: python benchmarks/floor.py [--rounds N]. Each round runs, in fresh interpreters and in this order
(so load drifts over all three alike):

- floor: one process loads the shipped cases (through the cache too: a file validated before is not validated
  again), imports torch (one thread), and for every case x dtype
  computes the reference and the tolerances, calls numpy and torch-cpu in a plain loop and judges each
  result with the harness's comparisons: no worker processes, journal, progress bar or report;
- cold: `python -m conformance run --backend numpy --backend torch-cpu --no-cache` (the reference computed);
- warm: the same with the reference cache, filled before the first round (a temporary cache directory).

It prints the median wall and CPU seconds (the CPU of every process a run started, its workers included) of each,
and the ratios cold/floor and warm/floor, and warm against the floor
without its reference time (the loop's own measure of it), the strictest comparison for a cached run.
Issue 16's goal: the default run within 1.3x the floor and under 5 s on a quiet 2-core machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

RUN = [sys.executable, "-m", "conformance", "run", "--backend", "numpy", "--backend", "torch-cpu", "--no-progress"]
GOAL_RATIO, GOAL_SECONDS = 1.3, 5.0


def loop() -> None:
    """The floor itself (`--loop`): prints the number of results judged and the seconds spent on the reference."""
    import torch

    torch.set_num_threads(1)
    from conformance.backends.numpy_backend import NumpyBackend
    from conformance.backends.torch_backend import TorchBackend
    from conformance.cache import Cache
    from conformance.dtypes import is_float
    from conformance.execution import Call, execute
    from conformance.loader import load_cases
    from conformance.runner import _build, _verdict, layouts_of

    backends = [NumpyBackend(), TorchBackend("cpu")]
    results, passed, reference = 0, 0, 0.0
    for case in load_cases(cache=Cache()):
        for dtype in case.dtypes:
            start = time.perf_counter()
            inputs, specs = _build(case, dtype)
            reference += time.perf_counter() - start
            assert inputs is not None, case.id
            floats = {d for d in {case.tensor_dtype(name, dtype) for name in case.inputs} | {dtype} if is_float(d)}
            for layout in layouts_of(case, dtype, case.layouts):
                for backend in backends:
                    results += len(specs)
                    if not floats <= backend.dtypes:  # the run reports these skipped
                        continue
                    request = Call(case.op, inputs.arrays(), inputs.reduction, case.grad, layout, case.derivative)
                    execution = execute(backend, request)
                    verdicts = [_verdict(spec, execution, wrt, backend) for wrt, spec in specs.items()]
                    passed += sum(v.status == "passed" for v in verdicts)
    print(json.dumps({"results": results, "passed": passed, "reference_seconds": reference}))


def adopt_orphans() -> None:
    """Become the reaper of every process the runs leave (the forkserver and its workers outlive the run's own
    process), so that their CPU seconds count in `RUSAGE_CHILDREN` (Linux; elsewhere only waited children count)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, of the command and every process it started), stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    with contextlib.suppress(ChildProcessError):
        while True:  # the orphans the command left, now ours: wait until they have all ended
            os.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        loop()
        return
    adopt_orphans()
    walls: dict[str, list[float]] = {"floor": [], "cold": [], "warm": []}
    cpus: dict[str, list[float]] = {name: [] for name in walls}
    references = []
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BCE_CONFORMANCE_CACHE_DIR": folder}
        timed(RUN, env)  # fills the cache
        for _ in range(args.rounds):
            seconds, cpu, out = timed([sys.executable, str(Path(__file__).resolve()), "--loop"], env)
            floor = json.loads(out)
            walls["floor"].append(seconds)
            cpus["floor"].append(cpu)
            references.append(floor["reference_seconds"])
            for name, extra in (("cold", ["--no-cache"]), ("warm", [])):
                seconds, cpu, out = timed(RUN + extra, env)
                walls[name].append(seconds)
                cpus[name].append(cpu)
                assert f"{floor['passed']} passed" in out, "the harness and the floor disagree on what passes"
    median = {name: statistics.median(values) for name, values in walls.items()}
    bare = statistics.median(f - r for f, r in zip(walls["floor"], references))
    rows = [[name, median[name], ", ".join(f"{v:.2f}" for v in values), statistics.median(cpus[name]),
             ", ".join(f"{v:.2f}" for v in cpus[name])] for name, values in walls.items()]
    rows.append(["floor without its reference", bare, "", "", ""])
    print(f"{floor['results']} results, {floor['passed']} passed; {args.rounds} rounds, alternating")
    print(tabulate(rows, headers=["run", "median s", "rounds", "median CPU s", "CPU s of the rounds"], floatfmt=".2f"))
    for label, ratio in (("cold / floor", median["cold"] / median["floor"]),
                         ("warm / floor", median["warm"] / median["floor"]),
                         ("warm / floor without its reference", median["warm"] / bare)):
        print(f"{label}: {ratio:.2f}")
    print(f"goal: warm within {GOAL_RATIO}x the floor and under {GOAL_SECONDS:.0f} s quiet -> "
          f"{median['warm'] / median['floor']:.2f}x, {median['warm']:.2f} s")


if __name__ == "__main__":
    main()
