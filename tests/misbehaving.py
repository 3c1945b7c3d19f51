"""Backends that misbehave on every call, each in one way, for the same-verdict test (tests/test_judging.py).

Each is the NumPy backend but for its one fault, so that every entry point (run, fuzz, the pytest plugin, the
accuracy atlas) sees the fault on whatever it asks.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from conformance.adapter import Rejected, Unsupported
from conformance.backends.numpy_backend import NumpyBackend


class Misbehaving(NumpyBackend):
    def __init__(self) -> None:
        self.name = f"misbehaving-{type(self).__name__}"

    def alter(self, compute):
        """What the backend does instead of `compute()` (the NumPy backend's answer)."""
        return compute()

    def bce(self, input, target, *, weight, reduction):
        return self.alter(lambda: super(Misbehaving, self).bce(input, target, weight=weight, reduction=reduction))

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        return self.alter(lambda: super(Misbehaving, self).bce_with_logits(
            input, target, weight=weight, pos_weight=pos_weight, reduction=reduction))


class Correct(Misbehaving):
    """The control: it must pass everywhere."""


class WarningStorm(Misbehaving):
    """The right values, with 150 warnings a call."""

    def alter(self, compute):
        for number in range(150):
            warnings.warn(f"warning {number}", RuntimeWarning, stacklevel=2)
        return compute()


class AdapterBug(Misbehaving):
    """An AttributeError of its own on every call: an adapter bug, not a rejection."""

    def alter(self, compute):
        return compute().no_such_attribute


class WrongValue(Misbehaving):
    def alter(self, compute):
        result = compute()
        return (result * 1.5).astype(result.dtype)


class AllNaN(Misbehaving):
    def alter(self, compute):
        result = compute()
        return np.full_like(result, np.nan)


class WrongRule(Misbehaving):
    """Rejects what it should, naming another rule."""

    def alter(self, compute):
        try:
            return compute()
        except Rejected as rejection:
            raise Rejected("out_of_range" if rejection.rule != "out_of_range" else "shape_mismatch") from None


class Lacking(Misbehaving):
    """Raises Unsupported on every call: it implements nothing after all."""

    def alter(self, compute):
        raise Unsupported("not implemented here")


class WrongConventionRule(Misbehaving):
    """Declares PyTorch's rejection convention, and answers every rejection with PyTorch's out-of-range error:
    only the backend's own convention tells which rule that names."""

    rejection_convention = "pytorch"

    def alter(self, compute):
        try:
            return compute()
        except Rejected:
            raise RuntimeError("all elements of target should be between 0 and 1") from None


class Hangs(Misbehaving):
    """Never answers (within any time limit a test sets)."""

    def alter(self, compute):
        time.sleep(60)
        return compute()
