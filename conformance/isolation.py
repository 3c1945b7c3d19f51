"""Backend calls in worker processes: a crash, a hang or a poisoned device costs one case, never the run.

Each backend has a lane: one worker process at a time (multiprocessing, started by the forkserver
where the platform has one, else spawned), fed batches of calls over a `multiprocessing.Pipe` and
answering call by call, so the parent knows which call a worker was running when it died or hung.
A dead worker yields `crashed` for that call, a call over the time limit yields `timeout` (its worker
is killed); the rest of the batch goes to a new worker. Calls marked `fresh` (cases that may poison
the backend's device) run alone in a worker of their own, which is discarded after the call; a
worker is also replaced after it reported a crash (`sys.exit`, `MemoryError`), and, for a backend
that declares `poisoning_rejections`, after any call that raised. A worker re-creates its backend
from the registry entry (`Entry` pickles as its origin where it can).
"""
from __future__ import annotations

import builtins
import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .compare import Outcome, Verdict
from .execution import Call, Calls, Execution, InProcess, execute
from .registry import Entry
from .results import Status

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take; generous, since a worker's first call also imports the backend and starts its device."""

BATCH = 64
"""The most calls sent to a worker in one message."""


@dataclass(frozen=True)
class Settings:
    timeout: float = DEFAULT_TIMEOUT
    memory_limit: int | None = None  # bytes of data segment per worker (RLIMIT_DATA)


@dataclass(frozen=True)
class _Stranger:
    """A returned value or raised exception that cannot travel between processes: its type's name and text."""

    type_name: str
    text: str
    base: str | None = None  # for an exception: the nearest built-in exception class it derives from

    @classmethod
    def of(cls, obj: Any) -> _Stranger:
        if isinstance(obj, BaseException):
            base = next(c.__name__ for c in type(obj).__mro__ if getattr(builtins, c.__name__, None) is c)
            return cls(type(obj).__name__, _text(str, obj), base)
        return cls(type(obj).__name__, _text(repr, obj))

    def revive(self) -> Any:
        """An object with the original's type name and text, for the comparison to describe."""
        if self.base is not None:
            try:
                return type(self.type_name, (getattr(builtins, self.base),), {})(self.text)
            except Exception:  # a base such as UnicodeDecodeError that wants more arguments
                return type(self.type_name, (Exception,), {})(self.text)
        text = self.text
        return type(self.type_name, (), {"__repr__": lambda _: text})()


def _text(show: Any, obj: Any) -> str:
    try:
        return show(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} that cannot be shown: {type(exc).__name__}>"


def _travels(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
        return True
    except Exception:
        return False


def _portable_value(value: Any) -> Any:
    """The value, or a `_Stranger` for it; a mapping (of gradients) that cannot travel becomes a dict of its items."""
    if (isinstance(value, (np.ndarray, np.generic)) and value.dtype != object) or _travels(value):
        return value
    if isinstance(value, Mapping):
        try:
            items = {key: _portable_value(item) for key, item in value.items()}
        except Exception:
            items = None
        if items is not None and _travels(items):
            return items
    return _Stranger.of(value)


def _portable(execution: Execution) -> Execution:
    """The execution with anything that would not survive pickling replaced by a `_Stranger`."""
    outcome = execution.outcome
    if outcome is None:
        return execution
    if outcome.error is not None:
        if _travels(outcome.error):
            return execution
        return replace(execution, outcome=Outcome(error=_Stranger.of(outcome.error)))  # type: ignore[arg-type]
    value = _portable_value(outcome.value)
    return execution if value is outcome.value else replace(execution, outcome=Outcome(value=value))


def _revived_value(value: Any) -> Any:
    if isinstance(value, _Stranger):
        return value.revive()
    if type(value) is dict and any(isinstance(item, _Stranger) for item in value.values()):
        return {key: _revived_value(item) for key, item in value.items()}
    return value


def _revived(execution: Execution) -> Execution:
    outcome = execution.outcome
    if outcome is None:
        return execution
    if isinstance(outcome.error, _Stranger):
        return replace(execution, outcome=Outcome(error=outcome.error.revive()))
    value = _revived_value(outcome.value)
    return execution if value is outcome.value else replace(execution, outcome=Outcome(value=value))


def _die_with_runner() -> None:
    """A thread that ends this worker when the runner dies (killed, even), whatever call the worker is stuck in."""
    runner = multiprocessing.parent_process()
    if runner is not None:
        threading.Thread(target=lambda: (runner.join(), os.kill(os.getpid(), signal.SIGKILL)), daemon=True).start()  # type: ignore[func-returns-value]


def _serve(conn: Connection, entry: bytes, memory_limit: int | None) -> None:
    """A worker: load the backend, then run each batch of calls it receives, answering call by call."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a stop sent to the process group: the runner's to handle
        signal.signal(sig, signal.SIG_IGN)
    _die_with_runner()
    os.dup2(2, 1)  # what a backend prints must not mix with a report on standard output
    if memory_limit is not None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        backend, broken = pickle.loads(entry).backend, None
    except Exception as exc:
        backend, broken = None, Execution(fault=Verdict(Status.ERROR, f"the worker process could not load the backend: "
                                                                       f"{type(exc).__name__}: {exc}"))
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        for token, request in batch:
            execution = broken or _portable(execute(backend, request))
            _flush_output()
            conn.send((token, execution))


def _flush_output() -> None:
    """Pass on what the backend printed before answering: a worker ends by SIGKILL, which flushes nothing."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):  # a stream the backend closed or broke
            stream.flush()


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "the worker process closed its connection"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "a signal"
        hint = " (the system may have run out of memory)" if -exitcode == signal.SIGKILL else ""
        return f"the worker process was killed by {name} (signal {-exitcode}){hint}"
    return f"the worker process exited with status {exitcode}"


def _context() -> Any:
    """forkserver where there is one: no threads or device state of the runner are inherited, and forks are cheap."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class _Lane:
    """The worker process that runs one backend's calls; a `single_use` lane starts a fresh worker for every call."""

    def __init__(self, workers: Workers, entry: Entry, single_use: bool) -> None:
        self.workers = workers
        self.single_use = single_use
        self.poisonable = bool(getattr(entry.backend, "poisoning_rejections", ()))
        self.queue: deque[tuple[int, Call]] = deque()
        self.inflight: deque[tuple[int, Call]] = deque()
        self.process: Any = None
        self.conn: Connection | None = None
        self.started = 0.0  # when the call at the head of `inflight` started, as far as the parent knows
        try:
            self.entry, self.unsendable = pickle.dumps(entry), None
        except Exception as exc:
            self.entry = b""
            self.unsendable = Execution(fault=Verdict(
                Status.ERROR, f"backend {entry.name!r} cannot be sent to a worker process "
                              f"({type(exc).__name__}: {exc}); register it (entry point or module:attr), "
                              f"or run with --no-isolation"))

    def _start(self) -> None:
        parent, child = self.workers.context.Pipe()
        args = (child, self.entry, self.workers.settings.memory_limit)
        self.process = self.workers.context.Process(target=_serve, args=args, daemon=True)
        self.process.start()
        child.close()
        self.conn = parent

    def stop(self) -> None:
        """End the worker (SIGKILL: it holds nothing worth a goodbye) and reap it."""
        if self.process is None:
            return
        assert self.conn is not None
        self.conn.close()
        self.process.kill()
        self.process.join()
        self.process, self.conn = None, None

    def dispatch(self) -> list[tuple[int, Execution]]:
        """Send the next batch when the worker is idle; calls that cannot be sent are answered at once."""
        if self.inflight or not self.queue:
            return []
        if self.unsendable is not None:
            done = [(token, self.unsendable) for token, _ in self.queue]
            self.queue.clear()
            return done
        if self.process is not None and not self.process.is_alive():  # died while idle: nothing of ours was running
            self.stop()
        if self.process is None:
            try:
                self._start()
            except Exception as exc:
                failed = Execution(fault=Verdict(Status.ERROR, f"could not start a worker process: "
                                                               f"{type(exc).__name__}: {exc}"))
                done = [(token, failed) for token, _ in self.queue]
                self.queue.clear()
                return done
        size = 1 if self.single_use else BATCH
        batch = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
        self.inflight.extend(batch)
        self.started = time.monotonic()
        assert self.conn is not None
        try:
            self.conn.send(batch)
        except (BrokenPipeError, ConnectionResetError):
            return self._died()
        return []

    def collect(self) -> list[tuple[int, Execution]]:
        """The answers that arrived; a death or an overrun ends the worker and answers its current call."""
        done: list[tuple[int, Execution]] = []
        if self.conn is None or not self.inflight:
            return done
        while self.inflight and self.conn.poll():
            try:
                token, execution = self.conn.recv()
            except (EOFError, OSError):  # the worker died, maybe in the middle of an answer
                return done + self._died()
            except Exception as exc:  # an answer that cannot be unpickled here
                token = self.inflight[0][0]
                execution = Execution(fault=Verdict(Status.ERROR, f"the backend's answer could not be read: "
                                                                  f"{type(exc).__name__}: {exc}"))
            self.inflight.popleft()
            self.started = time.monotonic()
            done.append((token, _revived(execution)))
            if self._spoiled(execution):
                self._retire()
                return done
        if self.inflight and not self.process.is_alive():
            return done + self._died()
        if self.inflight and time.monotonic() - self.started > self.workers.settings.timeout:
            return done + self._overran()
        if self.single_use and not self.inflight:
            self._retire()
        return done

    def _spoiled(self, execution: Execution) -> bool:
        """A worker is not trusted after it reported a crash, or after any raise of a backend that can be poisoned."""
        crashed = execution.fault is not None and execution.fault.status == Status.CRASHED
        raised = execution.outcome is not None and execution.outcome.error is not None
        return crashed or (raised and self.poisonable)

    def _retire(self) -> None:
        """Stop the worker; calls it had not answered go back to the front of the queue for the next one."""
        self.queue.extendleft(reversed(self.inflight))
        self.inflight.clear()
        self.stop()

    def _ended(self, fault: Verdict) -> list[tuple[int, Execution]]:
        token, _ = self.inflight.popleft()
        seconds = time.monotonic() - self.started
        self._retire()
        return [(token, Execution(seconds=seconds, fault=fault))]

    def _died(self) -> list[tuple[int, Execution]]:
        assert self.process is not None
        self.process.join(1.0)
        return self._ended(Verdict(Status.CRASHED, _death(self.process.exitcode)))

    def _overran(self) -> list[tuple[int, Execution]]:
        assert self.process is not None
        self.process.kill()
        return self._ended(Verdict(Status.TIMEOUT, f"no result within {self.workers.settings.timeout:g} s; "
                                                   f"the worker process was killed"))


class Workers:
    """Runs calls in worker processes, one lane per backend (and one more for its `fresh` calls)."""

    def __init__(self, entries: Sequence[Entry], settings: Settings = Settings(), preload: Iterable[str] = ()) -> None:
        """`preload`: modules the forkserver imports for every worker (those the backends imported when probed)."""
        self.settings = settings
        self.context = _context()
        if self.context.get_start_method() == "forkserver":  # takes effect when the forkserver starts, once
            self.context.set_forkserver_preload(["__main__", __name__, *sorted(preload)])
        self._lanes = [(_Lane(self, entry, False), _Lane(self, entry, True)) for entry in entries]

    def _all(self) -> list[_Lane]:
        return [lane for pair in self._lanes for lane in pair]

    def submit(self, token: int, backend: int, request: Call, fresh: bool = False) -> None:
        self._lanes[backend][fresh].queue.append((token, request))

    def ready(self) -> list[tuple[int, Execution]]:
        """Answers that have arrived, without waiting; idle workers get their next batch."""
        done: list[tuple[int, Execution]] = []
        for lane in self._all():
            done += lane.collect()
            done += lane.dispatch()
        return done

    def drain(self) -> Iterator[tuple[int, Execution]]:
        """Every remaining answer, as it arrives."""
        while True:
            yield from self.ready()
            running = [lane for lane in self._all() if lane.inflight]
            if not running:
                return
            deadline = min(lane.started for lane in running) + self.settings.timeout
            wait([w for lane in running for w in (lane.conn, lane.process.sentinel)],  # type: ignore[misc]
                 max(0.0, deadline - time.monotonic()) + 0.01)

    def close(self) -> None:
        for lane in self._all():
            lane.queue.clear()
            lane.stop()
            lane.inflight.clear()


def calls_for(entries: Sequence[Entry], settings: Settings | None, preload: Iterable[str] = ()) -> Calls:
    """Where the entries' calls run: worker processes under `settings`; None: this process (for a debugger)."""
    if settings is None:
        return InProcess([entry.backend for entry in entries])  # type: ignore[misc]
    return Workers(entries, settings, preload)
