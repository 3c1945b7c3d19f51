"""Backends for the accuracy gate: accurate everywhere, or accurate everywhere but in one region."""
from __future__ import annotations

import numpy as np

from .mutants import SymmetricSoftplusLogits, _lw


class AccurateLogits(SymmetricSoftplusLogits):
    """(1 - y) softplus(x) + pw y softplus(-x): no cancellation anywhere, so within every derived budget."""

    kind = "variant"


class NaiveTailAbove20(SymmetricSoftplusLogits):
    """The accurate formula, except log(1 + exp(-x)) for x > 20: 1 + e^-x rounds to 1 there, so y = 1 loses e^-x.

    Only the region of very positive logits with y = 1 sees it: elsewhere in x > 20 the loss is
    dominated by (1 - y) x, which this mutant still computes well.
    """

    kind = "mutant"
    breaches = {"logits-very-positive-y1"}

    def logits_terms(self, x, y, pw):
        naive = (1 - y) * x + _lw(pw, y) * np.log(1 + np.exp(-x))
        return np.where(x > 20, naive, super().logits_terms(x, y, pw))
