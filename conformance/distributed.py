"""A Dask cluster for long searches (`accuracy --exhaustive`, `fuzz --profile nightly`): `--workers N` starts a
LocalCluster on this machine, `--scheduler ADDRESS` joins an existing one. Dask is optional: the `distributed`
extra (`pip install 'bce-conformance[distributed]'`).

Work goes out as tasks whose results are folded back in a fixed order, so a run on a cluster reports what a run
in one process reports. A worker that dies loses its tasks only: the scheduler runs them again on another worker
(up to Dask's `distributed.scheduler.allowed-failures` times).
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Any, Iterator

from .errors import ConfigError


def add_options(parser: argparse.ArgumentParser) -> None:
    """--workers and --scheduler, for a subcommand that can spread its work over a cluster."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=_workers, metavar="N",
                       help="spread the work over a Dask LocalCluster of N worker processes on this machine "
                            "(needs the 'distributed' extra)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="spread the work over an existing Dask cluster, e.g. tcp://10.0.0.1:8786; its workers "
                            "need bce-conformance and the backends installed")


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of workers")
    return int(text)


@contextlib.contextmanager
def client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A `dask.distributed.Client` for `--workers` or `--scheduler`; None when neither is given (work stays here)."""
    if workers is None and scheduler is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise ConfigError(f"--workers and --scheduler need Dask ({exc}): pip install 'bce-conformance[distributed]'") \
            from None
    if scheduler is not None:
        try:
            connected = Client(scheduler, timeout=30)
        except (OSError, ValueError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect: {type(exc).__name__}: {exc}") from None
        with connected:
            yield connected
        return
    # one thread per worker: a worker is a process, as a backend's worker process is (dask sets OMP_NUM_THREADS=1)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as local:
        yield local
