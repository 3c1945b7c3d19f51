"""The result record: one case, one dtype, one backend."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # the backend's behaviour differs from the specification
    ERROR = "error"  # the harness could not judge: an adapter bug, or a case the reference contradicts
    SKIPPED = "skipped"  # not run: the backend does not compute in this dtype
    UNSUPPORTED = "unsupported"  # not run: a gradient case on a backend without the gradient capability

    def __str__(self) -> str:
        return self.value


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data
