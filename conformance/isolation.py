"""Backend calls in worker processes: a crash, a hang or a poisoned device costs one case, never the run.

Each backend has a lane: one worker process at a time (multiprocessing, started by the forkserver
where the platform has one, else spawned), fed batches of calls over a `multiprocessing.Pipe` and
answering call by call, so the parent knows which call a worker was running when it died or hung.
A dead worker yields `crashed` for that call, a call over the time limit yields `timeout` (its worker
is killed); the rest of the batch goes to a new worker. Calls marked `fresh` (cases that may poison
the backend's device) run alone in a worker of their own, which is discarded after the call, while no
other call of that backend runs; a worker is also replaced after it reported a crash (`sys.exit`,
`MemoryError`, a BaseException), and, for a backend that declares `poisoning_rejections`, after any call
that raised. A worker re-creates its backend from the registry entry (`Entry` pickles as its origin where
it can). Nothing outlives the runner: each worker leads a process group that is killed with it, and the
workers and the forkserver die with their parent (`die_with_parent`). Backends are probed in a child
process too (`probe`). docs/threat-model.md lists each fault and what it becomes.
"""
from __future__ import annotations

import builtins
import contextlib
import ctypes
import faulthandler
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .compare import Outcome, Verdict
from .execution import Call, Calls, Execution, InProcess, describe, escaped, execute, one_thread, shown, warm_up
from .registry import Entry
from .results import BackendInfo, Status

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take; generous, since a worker's first call also imports the backend and starts its device."""

START_TIMEOUT = 120.0
"""Seconds a worker may take to start and load its backend, before its first call's own time limit begins: on a
loaded machine a fork and an import can take longer than a short `--timeout`."""

WARM_UP_TIMEOUT = 600.0
"""Seconds an adapter's `warm_up()` may take in each worker, outside `--timeout`: torch.compile's first compile takes
10-45 s on a busy 2-core machine."""

WARMING = "warming"
"""What a worker sends (with no token) when it has loaded its backend and starts its warm-up."""

BATCH = 64
"""The most calls sent to a worker in one message."""

@dataclass(frozen=True)
class Settings:
    timeout: float = DEFAULT_TIMEOUT
    memory_limit: int | None = None  # bytes of data segment per worker (RLIMIT_DATA)
    warm_up: float = WARM_UP_TIMEOUT  # seconds for the adapter's optional `warm_up()`, before the first timed call


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
            return cls(type(obj).__name__, shown(str, obj), base)
        return cls(type(obj).__name__, shown(repr, obj))

    def revive(self) -> Any:
        """An object with the original's type name and text, for the comparison to describe."""
        if self.base is not None:
            try:
                return type(self.type_name, (getattr(builtins, self.base),), {})(self.text)
            except Exception:  # a base such as UnicodeDecodeError that wants more arguments
                return type(self.type_name, (Exception,), {})(self.text)
        text = self.text
        return type(self.type_name, (), {"__repr__": lambda _: text})()


def _travels(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
        return True
    except Exception:
        return False


@dataclass(frozen=True)
class _Oversized:
    """An array with more elements than any input of its call (so certainly of the wrong shape): its shape and
    dtype travel, not its data, which may be a broadcast view of 10**9 elements."""

    shape: tuple[int, ...]
    dtype: str

    def revive(self) -> Any:
        """An array of that shape and dtype that takes no memory (every element the same zero)."""
        try:
            return np.broadcast_to(np.zeros((), np.dtype(self.dtype)), self.shape)
        except Exception:  # a dtype this process cannot build
            return _Stranger("ndarray", f"array of shape {self.shape} and dtype {self.dtype}").revive()


def _portable_value(value: Any, limit: int) -> Any:
    """The value as it can travel: an ndarray (of a subclass, or a view) as a plain array, one larger than `limit`
    elements as an `_Oversized`, else the value or a `_Stranger` for it; a mapping (of gradients) that cannot
    travel becomes a dict of its items."""
    if isinstance(value, np.ndarray):
        if value.size > limit:
            return _Oversized(tuple(value.shape), value.dtype.str)
        if value.dtype != object:
            return np.asarray(value)
    if (isinstance(value, np.generic) and value.dtype != object) or _travels(value):
        return value
    if isinstance(value, Mapping):
        try:
            items = {key: _portable_value(item, limit) for key, item in value.items()}
        except Exception:
            items = None
        if items is not None and _travels(items):
            return items
    return _Stranger.of(value)


def _portable(execution: Execution, limit: int) -> Execution:
    """The execution with anything that would not survive pickling replaced by a `_Stranger` (`_portable_value`)."""
    outcome = execution.outcome
    if outcome is None:
        return execution
    if outcome.error is not None:
        if _travels(outcome.error):
            return execution
        return replace(execution, outcome=Outcome(error=_Stranger.of(outcome.error)))  # type: ignore[arg-type]
    value = _portable_value(outcome.value, limit)
    return execution if value is outcome.value else replace(execution, outcome=Outcome(value=value))


def _revived_value(value: Any) -> Any:
    if isinstance(value, (_Stranger, _Oversized)):
        return value.revive()
    if type(value) is dict and any(isinstance(item, (_Stranger, _Oversized)) for item in value.values()):
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


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a Linux process gets when the thread that started it ends."""


def die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when its parent dies (killed, even, or stopped in C with the GIL held):
    Linux's PR_SET_PDEATHSIG, which needs no thread of ours to run. False where the platform has none."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _die_with_runner() -> None:
    """End this worker when the runner dies, whatever call the worker is stuck in: by the kernel (its parent, the
    forkserver, dies with the runner: `_forkserver`), else by a thread that waits on the runner."""
    runner = multiprocessing.parent_process()
    if die_with_parent():
        if runner is not None and not runner.is_alive():  # it died before the request reached the kernel
            os._exit(1)
    elif runner is not None:
        threading.Thread(target=lambda: (runner.join(), os.kill(os.getpid(), signal.SIGKILL)),  # type: ignore[func-returns-value]
                         daemon=True).start()


def _detach() -> None:
    """A process group of this worker's own, so that what an adapter starts (a subprocess, a fork) ends with it; and
    Ctrl-C or a stop sent to the runner's group is the runner's to handle."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(os, "setpgid"):
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
    _die_with_runner()
    os.dup2(2, 1)  # what a backend prints must not mix with a report on standard output


def _limit(request: Call) -> int:
    """The most elements a right answer to the call can have: as many as its largest tensor."""
    return max((array.size for array in request.tensors.values()), default=1) or 1


def _answer(backend: Any, broken: Execution | None, request: Call) -> Execution:
    if broken is not None:
        return broken
    try:
        return _portable(execute(backend, request), _limit(request))
    except KeyboardInterrupt as exc:  # the adapter's own: this process ignores the signals
        return escaped(exc)


def _send(conn: Connection, token: int, execution: Execution) -> None:
    """Send the answer; one that cannot be pickled (out of memory on a huge value, say) is sent as an error."""
    try:
        payload = pickle.dumps((token, execution))
    except Exception as exc:
        execution = Execution(seconds=execution.seconds, fault=Verdict(
            Status.ERROR, f"the backend's answer could not be sent from its worker process: {describe(exc)}"))
        payload = pickle.dumps((token, execution))
    conn.send_bytes(payload)


def _serve(conn: Connection, entry: bytes, memory_limit: int | None) -> None:
    """A worker: load the backend, then run each batch of calls it receives, answering call by call. It ends
    quietly when the runner goes (a closed connection), whatever state the adapter left it in."""
    _detach()
    if memory_limit is not None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    one_thread()  # its calls are one at a time; torch may be loaded already (preloaded by the forkserver)
    try:
        backend, broken = pickle.loads(entry).backend, None
    except Exception as exc:
        backend, broken = None, Execution(fault=Verdict(Status.ERROR, f"the worker process could not load the backend: "
                                                                       f"{describe(exc)}"))
    try:
        if broken is None and callable(getattr(backend, "warm_up", None)):
            conn.send((None, WARMING))  # loaded: the warm-up's own time limit starts now
            broken = warm_up(backend)
        conn.send((None, None))  # ready: the runner's clock for the first call starts now
        while True:
            for token, request in conn.recv():
                execution = _answer(backend, broken, request)
                _flush_output()
                _send(conn, token, execution)
    except BaseException:  # the runner closed the connection, or the adapter broke this process: end, no traceback
        os._exit(0)


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


def start_forkserver(preload: Iterable[str]) -> Any:
    """Start the forkserver where the platform has one (else nothing), importing `preload` for every worker it will
    fork; the multiprocessing context workers start from. Returns at once: its imports overlap the caller's work.
    Only the first call starts it: a later one finds it running, with the modules it preloaded."""
    context = _context()
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["__main__", __name__, f"{__package__}._forkserver", *sorted(preload)])
        multiprocessing.forkserver.ensure_running()
    return context


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
        self.booting = False  # the worker has not said it is ready
        self.warming = False  # the worker runs the adapter's `warm_up()`
        try:
            self.entry, self.given_up = pickle.dumps(entry), None
        except Exception as exc:
            self.entry = b""
            self.given_up = Execution(fault=Verdict(
                Status.ERROR, f"backend {entry.name!r} cannot be sent to a worker process "
                              f"({type(exc).__name__}: {exc}); register it (entry point or module:attr), "
                              f"or run with --no-isolation"))

    def _start(self) -> None:
        parent, child = self.workers.context.Pipe()
        args = (child, self.entry, self.workers.settings.memory_limit)
        process = self.workers.context.Process(target=_serve, args=args, daemon=True)
        try:
            process.start()
        finally:
            child.close()
        self.process, self.conn, self.booting, self.warming = process, parent, True, False

    def _kill(self) -> None:
        """SIGKILL the worker and its process group: whatever the adapter started goes with it."""
        self.process.kill()
        with contextlib.suppress(OSError, AttributeError):  # a group not made yet, or a platform without groups
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """End the worker (SIGKILL: it holds nothing worth a goodbye), reap it, then close its connection: killed
        first, it cannot meet a closed pipe half-way through an answer."""
        if self.process is None:
            return
        self._kill()
        self.process.join()
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn = None, None

    def dispatch(self) -> list[tuple[int, Execution]]:
        """Send the next batch when the worker is idle; calls that cannot be sent are answered at once."""
        if self.inflight or not self.queue:
            return []
        if self.given_up is not None:  # every call gets the same answer: no worker can run them
            done = [(token, self.given_up) for token, _ in self.queue]
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
        except OSError:  # BrokenPipeError, ConnectionResetError: the worker died before reading
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
            self.started = time.monotonic()
            if token is None:  # the worker is warming up (its backend is loaded), or ready
                self.warming = execution == WARMING
                self.booting = self.warming
                continue
            self.inflight.popleft()
            done.append((token, _revived(execution)))
            if self._spoiled(execution):
                self._retire()
                return done
        if self.inflight and not self.process.is_alive():
            return done + self._died()
        if self.inflight and time.monotonic() > self.deadline:
            return done + self._overran()
        if self.single_use and not self.inflight:
            self._retire()
        return done

    @property
    def deadline(self) -> float:
        """When the call at the head of `inflight` overruns (a starting worker has `START_TIMEOUT` more; a warm-up has
        its own limit)."""
        if self.warming:
            return self.started + self.workers.settings.warm_up
        return self.started + self.workers.settings.timeout + (START_TIMEOUT if self.booting else 0.0)

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
        self._kill()
        if self.warming:  # every worker would warm up as long: the backend's calls are not run
            limit = self.workers.settings.warm_up
            self.given_up = Execution(fault=Verdict(Status.TIMEOUT, f"not run: the backend's warm-up did not finish "
                                                                    f"within {limit:g} s"))
            return self._ended(Verdict(Status.TIMEOUT, f"the backend's warm-up did not finish within {limit:g} s; "
                                                       f"the worker process was killed"))
        if self.booting:
            return self._ended(Verdict(Status.TIMEOUT, f"the worker process did not start within "
                                                       f"{START_TIMEOUT + self.workers.settings.timeout:g} s; "
                                                       f"it was killed"))
        return self._ended(Verdict(Status.TIMEOUT, f"no result within {self.workers.settings.timeout:g} s; "
                                                   f"the worker process was killed"))


class Workers:
    """Runs calls in worker processes, one lane per backend (and one more for its `fresh` calls)."""

    def __init__(self, entries: Sequence[Entry], settings: Settings = Settings(), preload: Iterable[str] = ()) -> None:
        """`preload`: modules the forkserver imports for every worker (those the backends imported when probed)."""
        self.settings = settings
        self.context = start_forkserver(preload)
        self._lanes = [(_Lane(self, entry, False), _Lane(self, entry, True)) for entry in entries]

    def _all(self) -> list[_Lane]:
        return [lane for pair in self._lanes for lane in pair]

    def submit(self, token: int, backend: int, request: Call, fresh: bool = False) -> None:
        self._lanes[backend][fresh].queue.append((token, request))

    def ready(self) -> list[tuple[int, Execution]]:
        """Answers that have arrived, without waiting; idle workers get their next batch. A backend's `fresh` calls
        (those that may poison its device) run truly alone: not while its main lane runs a batch, nor it while one
        of them runs."""
        done: list[tuple[int, Execution]] = []
        for main, fresh in self._lanes:
            done += main.collect() + fresh.collect()
            if fresh.queue or fresh.inflight:
                if not main.inflight:
                    done += fresh.dispatch()
            else:
                done += main.dispatch()
        return done

    def drain(self) -> Iterator[tuple[int, Execution]]:
        """Every remaining answer, as it arrives."""
        while True:
            yield from self.ready()
            running = [lane for lane in self._all() if lane.inflight]
            if not running:
                return
            deadline = min(lane.deadline for lane in running)
            wait([w for lane in running for w in (lane.conn, lane.process.sentinel)],  # type: ignore[misc]
                 max(0.0, deadline - time.monotonic()) + 0.01)

    def close(self) -> None:
        for lane in self._all():
            lane.queue.clear()
            lane.stop()
            lane.inflight.clear()


_STOPS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends: raised inside a fork's hooks (logging's lock release), the
    KeyboardInterrupt they become would be swallowed, and the signal lost."""
    held = hasattr(signal, "pthread_sigmask")
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS) if held else set()
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _probe_serve(conn: Connection, entries: Sequence[Entry], inspect: Callable[[Entry], BackendInfo]) -> None:
    """A probing process: each entry's `BackendInfo`, and the top-level modules probing it imported."""
    _detach()
    if hasattr(signal, "pthread_sigmask"):  # forked while the runner held them (`_stops_held`); ignored here
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    faulthandler.disable()  # a fork of a runner that dumps tracebacks on a crash: the crash is reported instead
    try:
        for entry in entries:
            before = set(sys.modules)
            info = inspect(entry)
            modules = {name for name in set(sys.modules) - before
                       if "." not in name and getattr(sys.modules[name], "__file__", None)}
            _flush_output()
            conn.send((info, modules))
    finally:
        os._exit(0)


def probe(entries: Sequence[Entry], inspect: Callable[[Entry], BackendInfo],
          timeout: float) -> tuple[list[BackendInfo], set[str]]:
    """`inspect` each entry in a child process (forked where the platform allows): an availability check that
    exits, crashes or hangs makes its backend unavailable, with the reason, and leaves the runner as it was.
    Also the top-level modules probing imported, for `Workers`'s preload."""
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    infos: list[BackendInfo] = []
    modules: set[str] = set()
    while len(infos) < len(entries):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(  # type: ignore[attr-defined]
            target=_probe_serve, args=(sender, entries[len(infos):], inspect), daemon=True)
        _flush_output()  # a fork copies unwritten output, which the child would write again
        try:
            with _stops_held():
                process.start()
        except Exception:  # entries that cannot be sent to a spawned process are probed here
            infos += [inspect(entry) for entry in entries[len(infos):]]
            break
        finally:
            sender.close()
        try:
            while len(infos) < len(entries):
                entry = entries[len(infos)]
                if not receiver.poll(timeout):
                    problem = f"did not finish within {timeout:g} s"
                    break
                try:
                    info, new = receiver.recv()
                except (EOFError, OSError):
                    process.join(1.0)
                    problem = f"ended its process: {_death(process.exitcode)}"
                    break
                infos.append(info)
                modules |= new
            else:
                break
        finally:
            process.kill()
            process.join()
            receiver.close()
        infos.append(BackendInfo(entry.name, entry.origin, False, f"availability check {problem}"))
    return infos, modules


def calls_for(entries: Sequence[Entry], settings: Settings | None, preload: Iterable[str] = ()) -> Calls:
    """Where the entries' calls run: worker processes under `settings`; None: this process (for a debugger)."""
    if settings is None:
        return InProcess([entry.backend for entry in entries])  # type: ignore[misc]
    return Workers(entries, settings, preload)
