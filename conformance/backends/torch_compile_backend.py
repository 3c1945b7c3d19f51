"""torch.compile: the torch CPU adapter's functionals compiled by Dynamo with the inductor backend; gradients by
torch autograd through the compiled graph (AOTAutograd compiles the backward too).

Each functional is compiled once per worker process with `fullgraph=True` (a graph break is an error, never a
silent fallback to eager) and Dynamo's default shape policy: static shapes first, then dynamic shapes once a
function sees a second shape ("automatic dynamic"), so a result may depend on the calls before it: the
adapter declares itself `stateful`. Dynamo's recompile limits are raised so that it never falls back to eager.
Inductor compiles C++ on the CPU with `$CXX` or g++ (torch/_inductor/config.py, `cpp.cxx`); without it the
backend is unavailable. An argument Dynamo refuses while tracing reaches the caller wrapped in
`torch._dynamo.exc.TorchRuntimeError`; the adapter raises the error PyTorch raised underneath, whose type and
message are PyTorch's (the `pytorch` rejection convention). torch.compile has no double backward and no
forward-mode AD through AOTAutograd: those capabilities are absent. `warm_up` compiles once before the first
timed call (the first compile of a process costs 10-45 s: inductor's imports, its compile workers, the C++
toolchain check), then resets Dynamo's caches, so the run starts from a fresh compile state. The shipped
manifest (data/expectations/torch-compile.yaml) lists the deviations from eager PyTorch. A worker killed in the
middle of a compile (a call over `--timeout`) can leave a truncated .so in inductor's on-disk cache, which later
compiles load ("file too short"): give its calls a generous `--timeout` (tox -e torch-compile: 300 s). torch loads
lazily.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from typing import Any, Callable, Mapping

import numpy as np

from conformance.adapter import Availability

from .torch_backend import TorchBackend

RECOMPILE_LIMIT = 100_000
"""Dynamo's recompile limits (8 per function and 256 in all by default): past them it runs eager, silently."""


def _compiler() -> str:
    """The C++ compiler inductor looks for on this platform (torch/_inductor/config.py, `cpp.cxx`)."""
    return os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")


def _bce(input: Any, target: Any, weight: Any, reduction: Any) -> Any:
    import torch.nn.functional as F

    return F.binary_cross_entropy(input, target, weight=weight, reduction=reduction)


def _bce_with_logits(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: Any) -> Any:
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(input, target, weight=weight, pos_weight=pos_weight,
                                              reduction=reduction)


def _sigmoid(input: Any) -> Any:
    import torch

    return torch.sigmoid(input)


def _sigmoid_bce(input: Any, target: Any, weight: Any, reduction: Any) -> Any:
    import torch
    import torch.nn.functional as F

    return F.binary_cross_entropy(torch.sigmoid(input), target, weight=weight, reduction=reduction)


@functools.cache
def _compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` compiled by inductor, once per process; a refusal while tracing raises PyTorch's own error."""
    import torch
    import torch._dynamo

    torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT
    torch._dynamo.config.accumulated_recompile_limit = RECOMPILE_LIMIT
    compiled = torch.compile(function, backend="inductor", fullgraph=True)

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        try:
            return compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as exc:
            raise _underneath(exc) from exc

    return call


def _underneath(exc: BaseException) -> BaseException:
    """The first exception in the chain of `exc` that Dynamo did not raise (the one PyTorch's operator raised while
    Dynamo traced it with fake tensors), else `exc` itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if not type(seen).__module__.startswith("torch._dynamo"):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


class TorchCompileBackend(TorchBackend):
    stateful = True  # Dynamo's compile cache: after a second shape a function is recompiled with dynamic shapes
    opt_in = True  # runs only when named: a full run compiles hundreds of graphs (about an hour on 2 busy cores)
    # AOTAutograd has neither double backward nor forward mode: the capabilities are absent, not inherited
    bce_grad2 = bce_with_logits_grad2 = bce_jvp = bce_with_logits_jvp = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "torch-compile"

    def availability(self) -> Availability:
        if importlib.util.find_spec("torch") is None:
            return Availability(False, "torch is not installed")
        if shutil.which(_compiler()) is None:
            return Availability(False, f"inductor compiles C++ on the CPU with {_compiler()}, which is not "
                                       f"installed (apt-get install g++, or set CXX)")
        return Availability(True)

    def version(self) -> str:
        return f"{super().version()}, inductor, {_compiler()}"

    def warm_up(self) -> None:
        """Compile and differentiate both losses once on two float32 elements, then reset Dynamo's caches."""
        import torch._dynamo

        x, y = np.array([0.25, 0.75], np.float32), np.array([0.0, 1.0], np.float32)
        self.bce_grad(x, y, weight=None, reduction="mean", grad_output=np.array(1, np.float32), wrt=("input",))
        self.bce_with_logits_grad(x, y, weight=None, pos_weight=None, reduction="mean",
                                  grad_output=np.array(1, np.float32), wrt=("input",))
        self.sigmoid(x)
        torch._dynamo.reset()

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        return self._array(_compiled(_sigmoid)(self._tensor(input)))

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        t = self._tensor
        return self._array(_compiled(_bce)(t(input), t(target), t(weight), reduction))

    def bce_with_logits(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        t = self._tensor
        return self._array(_compiled(_bce_with_logits)(t(input), t(target), t(weight), t(pos_weight), reduction))

    def bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                 grad_output: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        loss = _compiled(_bce)
        return self._autograd(lambda **t: loss(t["input"], t["target"], t["weight"], reduction),
                              {"input": input, "target": target, "weight": weight}, grad_output, wrt)

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        loss = _compiled(_bce_with_logits)
        tensors: Mapping[str, np.ndarray | None] = {"input": input, "target": target, "weight": weight,
                                                    "pos_weight": pos_weight}
        return self._autograd(lambda **t: loss(t["input"], t["target"], t["weight"], t["pos_weight"], reduction),
                              tensors, grad_output, wrt)

    def sigmoid_bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                         grad_output: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Autograd of BCELoss of torch.sigmoid, both compiled in one graph."""
        loss = _compiled(_sigmoid_bce)
        return self._autograd(lambda **t: loss(t["input"], t["target"], t["weight"], reduction),
                              {"input": input, "target": target, "weight": weight}, grad_output, wrt)


BACKENDS = [TorchCompileBackend()]
