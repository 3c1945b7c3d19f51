"""PyTorch backends: torch.nn.functional on the CPU and on a CUDA device; gradients by autograd. torch loads lazily."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

from conformance.adapter import Availability


class TorchBackend:
    dtypes = frozenset({"float16", "bfloat16", "float32", "float64"})
    rejection_convention = "pytorch"  # PyTorch's exception types and messages (data/rejection-rules.yaml)

    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"torch-{device}"
        # On CUDA an out-of-range BCE input trips a device-side assert that breaks every later call in the
        # process; the harness runs such cases in a worker process of their own.
        self.poisoning_rejections = frozenset({"out_of_range"}) if device != "cpu" else frozenset()

    def availability(self) -> Availability:
        if self.device == "cpu":  # found without importing it: the runner never calls torch, its workers do
            if importlib.util.find_spec("torch") is None:
                return Availability(False, "torch is not installed")
            return Availability(True)
        try:
            import torch
        except ImportError as exc:
            return Availability(False, f"torch is not installed ({exc})")
        if self.device == "cuda" and not torch.cuda.is_available():
            if torch.version.cuda is None:
                return Availability(False, f"torch {torch.__version__} is a build without CUDA")
            return Availability(False, "no CUDA device is visible (torch.cuda.is_available() is False)")
        return Availability(True)

    def version(self) -> str:
        if self.device == "cpu":
            return f"torch {importlib.metadata.version('torch')}"  # torch.__version__, without the import
        import torch

        return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}"

    def _tensor(self, array: np.ndarray | None) -> Any:
        import torch

        if array is None:
            return None
        if array.dtype == ml_dtypes.bfloat16:
            return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16).to(self.device)
        return torch.from_numpy(array.copy()).to(self.device)

    @staticmethod
    def _array(result: Any) -> np.ndarray:
        import torch

        result = result.detach().cpu()
        if result.dtype == torch.bfloat16:
            return result.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return result.numpy()

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        import torch

        return self._array(torch.sigmoid(self._tensor(input)))

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        import torch.nn.functional as F

        t = self._tensor
        return self._array(F.binary_cross_entropy(t(input), t(target), weight=t(weight), reduction=reduction))

    def bce_with_logits(
        self,
        input: np.ndarray,
        target: np.ndarray,
        *,
        weight: np.ndarray | None,
        pos_weight: np.ndarray | None,
        reduction: Any,
    ) -> np.ndarray:
        import torch.nn.functional as F

        t = self._tensor
        result = F.binary_cross_entropy_with_logits(
            t(input), t(target), weight=t(weight), pos_weight=t(pos_weight), reduction=reduction
        )
        return self._array(result)


    def _autograd(self, loss: Callable[..., Any], tensors: Mapping[str, np.ndarray | None], grad_output: np.ndarray,
                  wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Backward of `loss(**tensors)` with `grad_output`; the tensors in `wrt` require grad (weight raises)."""
        import torch

        leaves = {name: self._tensor(array) for name, array in tensors.items()}
        for name in wrt:
            leaves[name] = leaves[name].detach().requires_grad_(True)
        differentiated = [leaves[name] for name in wrt]
        grads = torch.autograd.grad(loss(**leaves), differentiated, grad_outputs=self._tensor(grad_output))
        return {name: self._array(grad) for name, grad in zip(wrt, grads)}

    def bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                 grad_output: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        import torch.nn.functional as F

        return self._autograd(lambda **t: F.binary_cross_entropy(**t, reduction=reduction),
                              {"input": input, "target": target, "weight": weight}, grad_output, wrt)

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        import torch.nn.functional as F

        tensors = {"input": input, "target": target, "weight": weight, "pos_weight": pos_weight}
        return self._autograd(lambda **t: F.binary_cross_entropy_with_logits(**t, reduction=reduction), tensors,
                              grad_output, wrt)


BACKENDS = [TorchBackend("cpu"), TorchBackend("cuda")]
