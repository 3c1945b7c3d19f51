"""Fault-injecting backends: the NumPy backend, misbehaving on the one case whose input holds `TRIGGER`.

Each kills or hangs its process, or returns something no check foresaw; `tests/data/fault_cases.yaml`
holds the case that triggers them and cases before and after it, which must still run and pass
(`tests/data/fault_gradient_cases.yaml` the same as gradient cases, for the faults that end a process).
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
import warnings

import numpy as np

from conformance.backends.numpy_backend import NumpyBackend

TRIGGER = 0.3125  # exact in every floating dtype


class Faulty(NumpyBackend):
    def __init__(self) -> None:
        self.name = f"fault-{type(self).__name__}"

    def fault(self, input: np.ndarray, result: np.ndarray) -> object:
        raise NotImplementedError

    def bce(self, input, target, *, weight, reduction):
        result = super().bce(input, target, weight=weight, reduction=reduction)
        return self.fault(input, result) if np.any(input == TRIGGER) else result

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        result = super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        return self.fault(input, result) if np.any(input == TRIGGER) else result

    def bce_grad(self, input, target, **arguments):
        """The gradients, and the fault on the trigger (where `result` is the mapping of gradients)."""
        result = super().bce_grad(input, target, **arguments)
        return self.fault(input, result) if np.any(input == TRIGGER) else result

    def bce_with_logits_grad(self, input, target, **arguments):
        result = super().bce_with_logits_grad(input, target, **arguments)
        return self.fault(input, result) if np.any(input == TRIGGER) else result


# --- faults that end or stall the process --------------------------------------------------------

class Segfaults(Faulty):
    def fault(self, input, result):
        return ctypes.string_at(0)  # reads address 0: SIGSEGV


class Aborts(Faulty):
    def fault(self, input, result):
        os.abort()


class CallsSysExit(Faulty):
    def fault(self, input, result):
        sys.exit(3)


class ExitsHard(Faulty):
    def fault(self, input, result):
        os._exit(7)


class Hangs(Faulty):
    def fault(self, input, result):
        while True:
            pass


class OnEveryBce:
    """Mixin: the fault on every call of `bce`, the logits op intact: what a fuzz run meets at its first sample."""

    def bce(self, input, target, *, weight, reduction):
        return self.fault(input, None)


class SegfaultsOnEveryBce(OnEveryBce, Segfaults):
    pass


class HangsOnEveryBce(OnEveryBce, Hangs):
    pass


class InterruptedOnEveryBce(OnEveryBce, Faulty):
    """Ctrl-C arrives during every `bce` call (in-process, where KeyboardInterrupt reaches the harness)."""

    def fault(self, input, result):
        raise KeyboardInterrupt


class EatsMemory(Faulty):
    """Allocates (and touches) 64 MiB blocks, up to 2 GiB (a bound for the machine's sake, should the limit fail)."""

    def fault(self, input, result):
        hoard = [np.ones(2**23) for _ in range(32)]
        return result if len(hoard) == 32 else None


class Chatters(Faulty):
    """Prints to standard output, where a report may be going."""

    def fault(self, input, result):
        print("debug: " * 20)
        return result


class Slow(NumpyBackend):
    """Correct, and 50 ms per call: a run long enough to interrupt."""

    name = "slow"

    def bce(self, input, target, *, weight, reduction):
        time.sleep(0.05)
        return super().bce(input, target, weight=weight, reduction=reduction)

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        time.sleep(0.05)
        return super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)


POISONED = False
DEVICE_ASSERT = "CUDA error: device-side assert triggered"


def _in_range(*arrays: np.ndarray) -> bool:
    return all(np.all((a >= 0) & (a <= 1)) for a in arrays)


class Poisons(NumpyBackend):
    """Imitates torch on CUDA: an out-of-range input trips an 'assert' that breaks every later call in its process."""

    name = "fault-Poisons"
    poisoning_rejections = frozenset({"out_of_range"})
    rejection_convention = "pytorch"  # torch's device-side assert is its out_of_range rejection on CUDA

    def device_assert(self, input: np.ndarray) -> np.ndarray:
        """The call that tripped the assert raises."""
        raise RuntimeError(DEVICE_ASSERT)

    def bce(self, input, target, *, weight, reduction):
        global POISONED
        if POISONED:
            raise RuntimeError(DEVICE_ASSERT)
        if not _in_range(input, target):
            POISONED = True
            return self.device_assert(input)
        return super().bce(input, target, weight=weight, reduction=reduction)

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        if POISONED:
            raise RuntimeError(DEVICE_ASSERT)
        return super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)


class PoisonsLater(Poisons):
    """CUDA reports errors asynchronously: the call that tripped the assert returns garbage, the next one raises."""

    name = "fault-PoisonsLater"

    def device_assert(self, input):
        return np.full(input.shape, np.nan, input.dtype)


class PoisonsOnTrigger(Poisons):
    """A value case hits a device fault (an illegal memory access) that breaks its process for good."""

    name = "fault-PoisonsOnTrigger"

    def bce(self, input, target, *, weight, reduction):
        global POISONED
        if np.any(input == TRIGGER) and not POISONED:
            POISONED = True
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().bce(input, target, weight=weight, reduction=reduction)


# --- misbehaving answers --------------------------------------------------------------------------

class ReturnsNone(Faulty):
    def fault(self, input, result):
        return None


class ReturnsList(Faulty):
    def fault(self, input, result):
        return result.tolist()


class ReturnsPythonScalar(Faulty):
    def fault(self, input, result):
        return float(result.sum())


class ReturnsNumpyScalar(Faulty):
    def fault(self, input, result):
        return result.dtype.type(result.sum())


class WrongShape(Faulty):
    def fault(self, input, result):
        return result.reshape(1, -1)


class WrongDtype(Faulty):
    def fault(self, input, result):
        return result.astype(np.float16)


class NanEverywhere(Faulty):
    def fault(self, input, result):
        return np.full_like(result, np.nan)


class MutatesInput(Faulty):
    def fault(self, input, result):
        input[...] = 0.5
        return result


class WarningStorm(Faulty):
    def fault(self, input, result):
        for _ in range(10_000):
            warnings.warn("log of a negative number", RuntimeWarning, stacklevel=1)
        return result


class WarnsOnce(Faulty):
    """Not a fault: one warning (a library's deprecation notice, say) leaves a correct answer alone."""

    def fault(self, input, result):
        warnings.warn("this keyword is deprecated", DeprecationWarning, stacklevel=1)
        return result


class ReturnsGenerator(Faulty):
    """Returns what cannot be pickled back from a worker."""

    def fault(self, input, result):
        return (x for x in result)


class PeculiarError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"peculiar failure {code}: {detail}")


class RaisesUnpicklable(Faulty):
    """Raises an exception whose class cannot be re-created from its pickle."""

    def fault(self, input, result):
        raise PeculiarError(5, "out of ideas")


class ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class ReturnsUnprintable(Faulty):
    def fault(self, input, result):
        return ReprRaises()


# --- misbehaving gradients -----------------------------------------------------------------------

class MutatesGradOutput(NumpyBackend):
    """Right gradients of BCE, but it scales grad_output in place (as an in-place autograd hook might)."""

    name = "fault-MutatesGradOutput"

    def bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        result = super().bce_grad(input, target, weight=weight, reduction=reduction, grad_output=grad_output, wrt=wrt)
        grad_output *= 2
        return result


class ReturnsMappingProxy(NumpyBackend):
    """Not a fault: right gradients in a read-only mapping, a type that cannot be pickled back from a worker."""

    name = "mapping-proxy"

    def bce_grad(self, input, target, **arguments):
        return types.MappingProxyType(super().bce_grad(input, target, **arguments))

    def bce_with_logits_grad(self, input, target, **arguments):
        return types.MappingProxyType(super().bce_with_logits_grad(input, target, **arguments))


CRASHES = {Segfaults: "SIGSEGV", Aborts: "SIGABRT", CallsSysExit: "sys.exit(3)", ExitsHard: "status 7"}
ANSWERS = {
    ReturnsNone: "returned NoneType, expected a numpy array",
    ReturnsList: "returned list, expected a numpy array",
    ReturnsPythonScalar: "returned float, expected a numpy array",
    ReturnsNumpyScalar: "shape (), expected (2,)",
    WrongShape: "shape (1, 2), expected (2,)",
    WrongDtype: "dtype float16, expected",
    NanEverywhere: "NaN everywhere",
    MutatesInput: "modified its input 'input'",
    WarningStorm: "emitted 10000 warnings in one call (first: RuntimeWarning: log of a negative number)",
    ReturnsGenerator: "returned generator, expected a numpy array",
    RaisesUnpicklable: "PeculiarError: peculiar failure 5: out of ideas",
    ReturnsUnprintable: "returned ReprRaises, expected a numpy array",
}
"""Each misbehaving answer and the words its failure line must contain."""


# --- faults that escaped the isolation once (issue 14) --------------------------------------------

class CustomBaseException(BaseException):
    """Neither an Exception nor one of Python's own: `except Exception` lets it through."""


class RaisesKeyboardInterrupt(Faulty):
    """The adapter's own KeyboardInterrupt (a library that turns a signal into one, say), not Ctrl-C."""

    def fault(self, input, result):
        raise KeyboardInterrupt("from the adapter")


class RaisesBaseException(Faulty):
    def fault(self, input, result):
        raise CustomBaseException("below Exception")


class Unshowable(Exception):
    def __str__(self) -> str:
        raise Unshowable()

    def __repr__(self) -> str:
        raise Unshowable()


class RaisesUnshowable(Faulty):
    """Raises an exception whose `__str__` and `__repr__` both raise (the same type, even)."""

    def fault(self, input, result):
        raise Unshowable()


class ReturnsHugeView(Faulty):
    """A broadcast view of 10**9 elements: 8 GB if copied, 8 bytes as it is."""

    def fault(self, input, result):
        return np.broadcast_to(np.asarray(0.5, result.dtype), (10**9,))


class ReturnsLocalSubclass(Faulty):
    """Right values in an ndarray subclass defined inside the call, which cannot be pickled."""

    def fault(self, input, result):
        class Local(np.ndarray):
            pass

        return result.view(Local)


PIDS = "BCE_FAULT_PIDS"
"""The environment variable naming the file where `ProbeMarker` writes its pid (in a runner started for a test)."""


class Spawns(Faulty):
    """Starts a subprocess, a fork and a thread that all outlive the call, and writes their pids to `self.pids`
    (set on the instance, which travels to the worker by pickle)."""

    pids = ""

    def fault(self, input, result):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
        with open(self.pids, "a") as file:
            file.write(f"{child.pid}\n{pid}\n")
        return result


class StopsItself(Faulty):
    """Sends itself SIGSTOP: a stopped process runs no thread, a watchdog's included."""

    def fault(self, input, result):
        os.kill(os.getpid(), signal.SIGSTOP)
        return result


class SpinsHoldingTheGil(Faulty):
    """Spins in C with the GIL held (a regular expression backtracking for ages): no other thread runs."""

    def fault(self, input, result):
        re.match(r"(a+)+$", "a" * 64 + "b")
        return result


class ClosesItsConnection(Faulty):
    """Closes every file descriptor above standard error: the worker's connection to the runner goes."""

    def fault(self, input, result):
        os.closerange(3, 4096)
        return result


class ProbeMarker(NumpyBackend):
    """A backend whose availability check writes its pid to the file in `BCE_FAULT_PIDS` first."""

    def mark(self) -> None:
        with open(os.environ[PIDS], "a") as file:
            file.write(f"{os.getpid()}\n")


class SlowProbe(ProbeMarker):
    name = "fault-SlowProbe"

    def availability(self):
        self.mark()
        time.sleep(30)
        return super().availability()


class ExitsInProbe(NumpyBackend):
    name = "fault-ExitsInProbe"

    def availability(self):
        sys.exit(0)


class SegfaultsInProbe(NumpyBackend):
    name = "fault-SegfaultsInProbe"

    def availability(self):
        return ctypes.string_at(0)


class NumericVersion(NumpyBackend):
    name = "fault-NumericVersion"

    def version(self):
        return 2


class DeadlocksOnOverlap(Poisons):
    """Imitates a device that deadlocks when two calls overlap (across processes): a call that finds another
    running hangs. Out-of-range inputs poison it, so their cases run in a worker of their own. The lock lies in
    the folder `self.locks` (set on the instance, which travels to the worker by pickle)."""

    name = "fault-DeadlocksOnOverlap"
    locks = ""

    def _alone(self, compute):
        lock = os.path.join(self.locks, "busy")
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            while True:
                time.sleep(1)
        try:
            time.sleep(0.02)
            return compute()
        finally:
            os.close(handle)
            os.unlink(lock)

    def bce(self, input, target, *, weight, reduction):
        return self._alone(lambda: super(DeadlocksOnOverlap, self).bce(input, target, weight=weight,
                                                                       reduction=reduction))

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        return self._alone(lambda: super(DeadlocksOnOverlap, self).bce_with_logits(
            input, target, weight=weight, pos_weight=pos_weight, reduction=reduction))


class ChangesDirectory(Faulty):
    """Moves to another working directory and makes NumPy raise on every floating-point problem."""

    def fault(self, input, result):
        os.chdir(os.path.dirname(os.path.dirname(os.getcwd())) or "/")
        np.seterr(all="raise")
        return result


ESCAPES = {
    RaisesKeyboardInterrupt: "raised KeyboardInterrupt: from the adapter (a BaseException, not an Exception)",
    RaisesBaseException: "raised CustomBaseException: below Exception (a BaseException, not an Exception)",
}
"""Each BaseException an adapter raises and the words of its `crashed` line."""
