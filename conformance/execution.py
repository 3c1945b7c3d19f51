"""One backend call on copies of a case's inputs, and what came of it; `InProcess` runs calls in this process."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .adapter import Backend, call, call_derivative
from .compare import Outcome, Verdict
from .inputs import arranged
from .results import Status

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def one_thread() -> None:
    """From now on, backends in this process compute on one thread: the thread variables for the libraries not yet
    loaded, and torch's own setting where it is. A process that runs calls beside others (a worker process, or an
    xdist worker) computes as one of them, on one core: the calls are small, and starting OpenMP's threads for a
    3-element tensor costs milliseconds (torch's log_sigmoid: about 6 ms a call under load, 3.4 us on one thread)."""
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@dataclass(frozen=True)
class Call:
    """What a backend is asked to do: one op on the tensors of one case under one dtype, or its gradients."""

    op: str
    tensors: Mapping[str, np.ndarray]  # with `grad_output` for a gradient call
    reduction: Any
    wrt: tuple[str, ...] = ()  # the tensors to differentiate the loss by; empty: the loss itself
    layout: str = "c"  # how the backend receives the arrays (inputs.LAYOUTS)
    derivative: str = "grad"  # which derivative a gradient call asks for (adapter.DERIVATIVES)


def _perform(backend: Backend, request: Call, tensors: Mapping[str, np.ndarray]) -> Any:
    if request.wrt:
        return call_derivative(backend, request.derivative, request.op, tensors, request.reduction, request.wrt)
    return call(backend, request.op, tensors, request.reduction)


@dataclass(frozen=True)
class Execution:
    """What a call did: an outcome, or a `fault` (crashed, timeout, not started) when it has none."""

    outcome: Outcome | None = None
    seconds: float = 0.0
    modified: str | None = None  # the name of an input the backend changed in place
    warnings: int = 0
    first_warning: str = ""
    fault: Verdict | None = None


class _WarningCounter:
    """Counts warnings instead of showing them; keeps the first one's text."""

    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def __call__(self, message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if not self.count:
            self.first = f"{category.__name__}: {str(message).splitlines()[0] if str(message) else ''}".rstrip(": ")
        self.count += 1


def shown(show: Callable[[Any], str], obj: Any) -> str:
    """`show(obj)` (str or repr), or a placeholder naming the type where that raises."""
    try:
        return show(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} that cannot be shown: {type(exc).__name__}>"


def describe(exc: BaseException) -> str:
    """'Type: text' of an exception, even one whose `__str__` raises."""
    return f"{type(exc).__name__}: {shown(str, exc)}".rstrip(": ")


def _showable(exc: Exception) -> Exception:
    """The exception, or a stand-in with its type's name where its `__str__` or `__repr__` raise."""
    try:
        str(exc), repr(exc)
        return exc
    except Exception:
        return type(type(exc).__name__, (Exception,), {})(describe(exc).partition(": ")[2])


def escaped(exc: BaseException) -> Execution:
    """What a call that raised a BaseException that is no Exception (a KeyboardInterrupt of the adapter's own,
    GeneratorExit, a custom subclass) did: it crashed, and its line names the exception."""
    return Execution(fault=Verdict(Status.CRASHED, f"raised {describe(exc)} (a BaseException, not an Exception)"))


def warm_up(backend: Backend) -> Execution | None:
    """Run the adapter's optional `warm_up()` (a compile, a device start) before its first timed call: None when it
    has none or it returned, else the error every call of this process gets."""
    hook = getattr(backend, "warm_up", None)
    if not callable(hook):
        return None
    try:
        hook()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return Execution(fault=Verdict(Status.ERROR, f"the backend's warm-up raised {describe(exc)}"))
    return None


_WARMED: dict[int, tuple[Backend, Execution | None]] = {}
"""The backends this process has warmed up, by id (each held, so that its id stays its own), with what came of it."""


def warmed(backend: Backend) -> Execution | None:
    """`warm_up(backend)`, once per backend object in this process (the pytest plugin runs each case on its own)."""
    if id(backend) not in _WARMED:
        _WARMED[id(backend)] = backend, warm_up(backend)
    return _WARMED[id(backend)][1]


def execute(backend: Backend, request: Call) -> Execution:
    """Call the backend on copies of the inputs (grad_output included) in the call's layout: what it returned or
    raised, how long it took, what it changed."""
    tensors = arranged(request.tensors, request.layout)
    counter = _WarningCounter()
    fault = outcome = None
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = counter
        try:
            outcome = Outcome(value=_perform(backend, request, tensors))
        except MemoryError as exc:
            fault = Verdict(Status.CRASHED, f"ran out of memory: {describe(exc)}")
        except SystemExit as exc:
            fault = Verdict(Status.CRASHED, f"called sys.exit({shown(repr, exc.code)})")
        except Exception as exc:
            outcome = Outcome(error=_showable(exc))
        except KeyboardInterrupt:  # Ctrl-C in this process ends the run; a worker process reports it (isolation)
            raise
        except BaseException as exc:
            return replace(escaped(exc), seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    modified = next((name for name, array in tensors.items()
                     if array.shape != request.tensors[name].shape
                     or array.tobytes() != request.tensors[name].tobytes()), None)
    return Execution(outcome, seconds, modified, counter.count, counter.first, fault)


class InProcess:
    """Runs each call at once, in this process: no protection from crashes or hangs, nothing to start."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self._backends = backends
        self._done: list[tuple[int, Execution]] = []

    def submit(self, token: int, backend: int, request: Call, fresh: bool = False) -> None:
        """Run the call (the backend's warm-up first, once per process); the working directory and NumPy's error state are as
        before it, whatever the backend did."""
        directory = os.getcwd()
        try:
            with np.errstate(**np.geterr()):
                broken = warmed(self._backends[backend])
                self._done.append((token, broken or execute(self._backends[backend], request)))
        finally:
            with contextlib.suppress(OSError):
                os.chdir(directory)

    def ready(self) -> list[tuple[int, Execution]]:
        done, self._done = self._done, []
        return done

    def drain(self) -> Iterator[tuple[int, Execution]]:
        yield from self.ready()

    def close(self) -> None:
        self._done = []


class Calls(Protocol):
    """Where backend calls run: `InProcess`, or `isolation.Workers`; answers come back by token."""

    def submit(self, token: int, backend: int, request: Call, fresh: bool = False) -> None: ...

    def ready(self) -> list[tuple[int, Execution]]: ...

    def drain(self) -> Iterator[tuple[int, Execution]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Invoke:
    """Calls to one backend, each answered before the next is made: how a property reaches its backend. Holds the
    backend itself too, which judging what a call raised consults (its rejection rules)."""

    calls: Calls
    index: int  # the backend's number among those of `calls`
    backend: Backend

    def __call__(self, request: Call) -> Execution:
        self.calls.submit(0, self.index, request)
        return next(execution for _, execution in self.calls.drain())


def in_process(backend: Backend) -> Invoke:
    """Calls to `backend` in this process."""
    return Invoke(InProcess([backend]), 0, backend)
