"""The records of a run: one result per case, dtype and backend; what was known of each backend; the run itself."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # the backend's behaviour differs from the specification
    ERROR = "error"  # the harness could not judge: an adapter bug, or a case the reference contradicts
    CRASHED = "crashed"  # the backend's process died (signal, exit, out of memory) during the call
    TIMEOUT = "timeout"  # the call did not return within the time limit; its process was killed
    SKIPPED = "skipped"  # not run: the backend does not compute in this dtype
    UNSUPPORTED = "unsupported"  # outside what the backend implements (adapter.missing_features, Unsupported)
    UNVERIFIED = "unverified"  # a rejection case the backend rejected, for a rule the harness cannot establish

    def __str__(self) -> str:
        return self.value


NOT_RUN = (Status.SKIPPED, Status.UNSUPPORTED)
EXPECTED, UNEXPECTED_PASS = "expected", "unexpected-pass"
"""The marks an expectations manifest puts on a result (`Result.expectation`)."""
NOT_REPRODUCED = "not reproduced"
"""The mark of a failure that, rerun alone in a fresh worker after the run, gave another status (`Result.alone`)."""
EXACT, AS_SPECIFIED = "exact", "as specified"
"""Which reference a passing value matched (`Result.matched`): the exact value, or only PyTorch's algorithm in the dtype."""
GATE_FAILURES = (Status.FAILED, Status.ERROR, Status.CRASHED, Status.TIMEOUT)
"""Statuses that make a run red."""
JUDGED = (Status.PASSED, Status.FAILED)
"""Statuses of results the specification judged: a backend's coverage is their share of its results."""


ResultKey = tuple[str, str, str, str | None, str]
"""What identifies a result within a run (`Result.key`): backend, case id, dtype, wrt, layout."""


@dataclass(frozen=True)
class Result:
    backend: str
    case_id: str
    op: str
    dtype: str
    status: Status
    message: str
    source: str  # path:line of the case
    wrt: str | None = None  # the tensor whose gradient this result checks; None for the loss value
    expected: str = ""
    got: str = ""
    max_abs_error: float | None = None
    allowed: float | None = None  # admissible error at the element with the least headroom
    max_ulp_error: float | None = None
    headroom: float | None = None  # greatest error / allowed over the elements (<= 1 passes)
    index: list[int] | None = None  # where that element is
    seconds: float = 0.0  # time spent inside the backend
    tags: list[str] = field(default_factory=list)
    rerun: str = ""  # the command that reruns just this result, where the case file does not say it
    expectation: str = ""  # "expected" or "unexpected-pass" where an expectations manifest lists it (expectations.py)
    layout: str = "c"  # the memory layout the backend received the arrays in (inputs.LAYOUTS)
    matched: str = ""  # a compared pass: EXACT, or AS_SPECIFIED where only PyTorch's algorithm in the dtype admits it
    alone: str = ""  # NOT_REPRODUCED: a failure that rerun alone gave another status; "" otherwise (or not rerun)

    @property
    def key(self) -> ResultKey:
        """What identifies a result within a run."""
        return self.backend, self.case_id, self.dtype, self.wrt, self.layout

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """The inverse of `json_safe(result.to_dict())`; raises ValueError or TypeError on a malformed record."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TypeError(f"unknown keys {', '.join(sorted(unknown))}")
        values = {k: (_float(v) if k in _FLOAT_FIELDS else v) for k, v in data.items()}
        return cls(**{**values, "status": Status(data.get("status"))})


_FLOAT_FIELDS = {"max_abs_error", "allowed", "max_ulp_error", "headroom", "seconds"}
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _float(value: Any) -> Any:
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as the strings 'nan', 'inf', '-inf'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class BackendInfo:
    name: str
    origin: str
    available: bool
    reason: str = ""
    version: str = ""
    dtypes: tuple[str, ...] = ()
    gradients: tuple[str, ...] = ()  # the ops it differentiates
    device: str = ""  # where it computes (the adapter's optional `device`), "" where it does not say
    required: bool = False  # --require: being unavailable fails the run instead of skipping the backend
    stateful: bool = False  # the adapter's optional `stateful`: a result may depend on the calls before it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendInfo:
        """The inverse of `to_dict` after a trip through JSON (lists for tuples); raises TypeError on unknown keys."""
        return cls(**{**data, **{key: tuple(data.get(key, ())) for key in ("dtypes", "gradients")}})

    @property
    def selector(self) -> str:
        """The `--backend` argument that selects it again: its module:attr where it was loaded from one, else its name
        (built-in or from an entry point, whose origin `entry point NAME = module:attr` holds a colon too)."""
        return self.origin if ":" in self.origin and not self.origin.startswith("entry point ") else self.name


@dataclass(frozen=True)
class Shard:
    """A run of part of a selection (`run --shard K/N`): which part, and the whole selection in run order."""

    index: int
    count: int
    cases: tuple[str, ...]  # every selected case id, in run order
    dtypes: tuple[str, ...] = ()  # the --dtype selection (empty: every dtype of each case)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        """The inverse of `to_dict` after a trip through JSON (lists for tuples)."""
        return cls(**{**data, "cases": tuple(data["cases"]), "dtypes": tuple(data["dtypes"])})


@dataclass
class Run:
    backends: list[BackendInfo]
    results: list[Result] = field(default_factory=list)
    complete: bool = True  # False when the run was interrupted, or read back from an unfinished results file
    command: str = ""  # the command line that produced it
    seed: int | None = None  # the hypothesis seed of a fuzz run
    shard: Shard | None = None
    environment: dict[str, Any] = field(default_factory=dict)  # the machine a saved report was made on ({}: this one)
