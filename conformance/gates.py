"""The gate policy: whether a run passes, and every reason it does not, decided in one call (`judge`) for run,
report, merge, fuzz and the pytest plugin.

A run fails where a result failed, errored, crashed or timed out and no expectations manifest lists it; where
--require-grad finds a gradient it could not check; where --strict-expectations finds a listed deviation that
passed; where a backend --require names is unavailable; where --min-cases or --min-coverage is not met; and
where the run did not finish. A run that ran nothing at all is a usage error.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Collection

from bce_reference import FLOAT_DTYPES

from . import expectations
from .errors import ConfigError
from .results import EXPECTED, GATE_FAILURES, JUDGED, NOT_RUN, UNEXPECTED_PASS, BackendInfo, Result, Run, Status

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Policy:
    """What a run must meet: the gate options of the command line and the pytest plugin (conformance/options.py)."""

    require_grad: bool = False
    required: tuple[str, ...] = ()  # backends (names or module:attr) whose being unavailable fails the run
    min_cases: int | None = None
    dtypes: tuple[str, ...] = ()  # the dtypes --min-cases counts in (empty: every float dtype)
    min_coverage: float | None = None  # percent
    manifests: tuple[expectations.Manifest, ...] = ()
    strict_expectations: bool = False
    unselected: Collection[str] = ()  # case ids that -k or a shard left out: entries about them only are not unmatched
    partial: bool = False  # judge an unfinished run on what it holds (report --partial)

    def on_unsupported(self, result: Result) -> Result:
        """--require-grad: an unsupported gradient is a failure (before the manifests, which may list it)."""
        if self.require_grad and result.status == Status.UNSUPPORTED:
            return dataclasses.replace(result, status=Status.FAILED,
                                       message=f"{result.message}; --require-grad makes this a failure")
        return result

    def on_unexpected_pass(self, result: Result) -> Result:
        """--strict-expectations: a deviation a manifest lists that passed is a failure (after the manifests)."""
        if self.strict_expectations and result.expectation == UNEXPECTED_PASS and result.status == Status.PASSED:
            return dataclasses.replace(result, status=Status.FAILED,
                                       message=f"{result.message}; --strict-expectations makes this a failure")
        return result


@dataclass(frozen=True)
class Verdict:
    """The run as judged (results marked by the manifests and the policy, required backends marked), its exit
    status, the results that fail it, and one line for each other reason it fails; `warnings` fail nothing."""

    run: Run
    status: int  # EXIT_OK, EXIT_FAILED, EXIT_USAGE (nothing ran), or 128 + the signal that interrupted the run
    failures: tuple[Result, ...] = ()
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == EXIT_OK

    @property
    def unfinished(self) -> bool:
        """Whether it fails for the run not having finished (report --partial judges what an unfinished run holds)."""
        return unfinished(self.run) in self.reasons


def failing(result: Result) -> bool:
    """Whether the result makes the run red: a failure that no expectations manifest lists."""
    return result.status in GATE_FAILURES and result.expectation != EXPECTED


def missing_required(run: Run) -> list[BackendInfo]:
    """Backends that --require named and that could not run."""
    return [b for b in run.backends if b.required and not b.available]


def ran(run: Run) -> int:
    """Results that executed a backend (everything but skipped and unsupported)."""
    return sum(1 for r in run.results if r.status not in NOT_RUN)


def coverage(run: Run) -> dict[str, tuple[int, int]]:
    """Each backend's results judged (passed or failed) and results specified, the backends with no result left out."""
    counts: dict[str, list[int]] = {}
    for result in run.results:
        judged_specified = counts.setdefault(result.backend, [0, 0])
        judged_specified[0] += result.status in JUDGED
        judged_specified[1] += 1
    return {backend: (judged, specified) for backend, (judged, specified) in counts.items()}


def coverage_text(judged: int, specified: int) -> str:
    return f"{judged}/{specified} ({100 * judged / specified:.1f}%)" if specified else ""


def shortfalls(run: Run, minimum: int, dtypes: Collection[str]) -> list[tuple[str, str, int]]:
    """--min-cases: (backend, dtype, results run) of each available backend x dtype that ran fewer than `minimum`."""
    counts = Counter((r.backend, r.dtype) for r in run.results if r.status not in NOT_RUN)
    return [(b.name, dtype, counts[(b.name, dtype)]) for b in run.backends if b.available for dtype in dtypes
            if counts[(b.name, dtype)] < minimum]


def _require(run: Run, names: Collection[str]) -> Run:
    """Mark the backends --require names (by name or module:attr), so that being unavailable fails the run."""
    known = {b.name for b in run.backends} | {b.selector for b in run.backends}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"--require {unknown[0]}: no such backend in this run "
                          f"(backends: {', '.join(b.name for b in run.backends)})")
    backends = [dataclasses.replace(b, required=b.required or bool({b.name, b.selector} & set(names)))
                for b in run.backends]
    return dataclasses.replace(run, backends=backends)


def _reasons(run: Run, policy: Policy) -> list[str]:
    """Why the judged run fails, one line each, beside its failing results."""
    reasons = [f"required backend {b.name} is unavailable: {b.reason}" for b in missing_required(run)]
    if policy.min_cases is not None:
        short = shortfalls(run, policy.min_cases, policy.dtypes or FLOAT_DTYPES)
        if short:
            listed = ", ".join(f"{backend} {dtype} ran {number}" for backend, dtype, number in short)
            reasons.append(f"--min-cases {policy.min_cases} not met: {listed}")
    if policy.min_coverage is not None:
        short_coverage = [f"{name} {coverage_text(*counts)}" for name, counts in coverage(run).items()
                          if counts[0] < policy.min_coverage / 100 * counts[1]]
        if short_coverage:
            reasons.append(f"--min-coverage {policy.min_coverage:g}% not met: {', '.join(short_coverage)}")
    return reasons


def unfinished(run: Run) -> str:
    return f"the run did not finish ({len(run.results)} results), so it cannot pass"


def judge(run: Run, policy: Policy, interrupted: int | None = None) -> Verdict:
    """The verdict on `run` under `policy`; `interrupted` is the signal that stopped the run, if one did (its exit
    status is 128 + the signal's number). Raises ConfigError where --require names a backend the run lacks, or a
    manifest a backend it lacks."""
    warnings: list[str] = []
    run = _require(run, policy.required)
    run = dataclasses.replace(run, results=[policy.on_unsupported(r) for r in run.results])
    if policy.manifests:
        run, warnings = expectations.apply(run, list(policy.manifests), policy.unselected)
    run = dataclasses.replace(run, results=[policy.on_unexpected_pass(r) for r in run.results])
    failures = tuple(r for r in run.results if failing(r))
    reasons = _reasons(run, policy)
    empty_shard = run.shard is not None and not run.results  # a shard may hold no case of a small selection
    if interrupted is not None:
        status = 128 + interrupted
    elif not run.complete and not policy.partial:  # whatever it holds, even nothing
        status = EXIT_FAILED
        reasons.append(unfinished(run))
    elif ran(run) == 0 and not missing_required(run) and not empty_shard:
        why = "; ".join(f"{b.name}: {b.reason}" for b in run.backends if not b.available)
        status, reasons = EXIT_USAGE, [f"nothing ran{' (' + why + ')' if why else ''}"]
    else:
        status = EXIT_FAILED if failures or reasons else EXIT_OK
    return Verdict(run, status, failures, tuple(reasons), tuple(warnings))
