"""PyTorch backends: torch.nn.functional on the CPU and on a CUDA device; gradients by autograd. torch loads lazily."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
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
        """The array as a tensor with the same strides, on the device: torch's own non-contiguous paths run."""
        if array is None:
            return None
        return _strided(array).to(self.device)

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

    def sigmoid_bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                         grad_output: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Autograd of BCELoss of torch.sigmoid: through sigmoid's own backward."""
        import torch
        import torch.nn.functional as F

        return self._autograd(lambda input, **t: F.binary_cross_entropy(torch.sigmoid(input), **t, reduction=reduction),
                              {"input": input, "target": target, "weight": weight}, grad_output, wrt)

    def _double_backward(self, loss: Callable[..., Any], tensors: Mapping[str, np.ndarray | None],
                         grad_output: np.ndarray, tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The gradient by each tensor of `wrt` of <d loss / d input (with grad_output), tangent>: double backward."""
        import torch

        leaves = {name: self._tensor(array) for name, array in tensors.items()}
        for name in {"input", *wrt}:
            leaves[name] = leaves[name].detach().requires_grad_(True)
        grad_input, = torch.autograd.grad(loss(**leaves), leaves["input"], grad_outputs=self._tensor(grad_output),
                                          create_graph=True)
        grads = torch.autograd.grad(grad_input, [leaves[name] for name in wrt], grad_outputs=self._tensor(tangent),
                                    allow_unused=True)
        return {name: self._array(torch.zeros_like(leaves[name]) if grad is None else grad)
                for name, grad in zip(wrt, grads)}

    def _jvp(self, loss: Callable[..., Any], tensors: Mapping[str, np.ndarray | None], tangent: np.ndarray,
             wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Forward mode, `torch.func.jvp`, of the loss as each tensor of `wrt` alone moves along `tangent` (its first
        call in a process sets up functorch's transforms: about a second)."""
        from torch.func import jvp

        refused = [name for name in wrt if name not in ("input", "target")]
        if refused:
            raise ValueError(f"the loss is not differentiable with respect to {', '.join(refused)}")
        primals = {name: self._tensor(array) for name, array in tensors.items()}
        direction = self._tensor(tangent)
        results = {}
        for name in wrt:
            def along(moving: Any, name: str = name) -> Any:
                return loss(**{**primals, name: moving})

            results[name] = self._array(jvp(along, (primals[name],), (direction,))[1])  # (value, derivative)
        return results

    def bce_grad2(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                  grad_output: np.ndarray, tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        import torch.nn.functional as F

        return self._double_backward(lambda **t: F.binary_cross_entropy(**t, reduction=reduction),
                                     {"input": input, "target": target, "weight": weight}, grad_output, tangent, wrt)

    def bce_with_logits_grad2(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                              pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                              tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        import torch.nn.functional as F

        tensors = {"input": input, "target": target, "weight": weight, "pos_weight": pos_weight}
        return self._double_backward(lambda **t: F.binary_cross_entropy_with_logits(**t, reduction=reduction),
                                     tensors, grad_output, tangent, wrt)

    def bce_jvp(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        import torch.nn.functional as F

        return self._jvp(lambda **t: F.binary_cross_entropy(**t, reduction=reduction),
                         {"input": input, "target": target, "weight": weight}, tangent, wrt)

    def bce_with_logits_jvp(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                            pos_weight: np.ndarray | None, reduction: Any, tangent: np.ndarray,
                            wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        import torch.nn.functional as F

        tensors = {"input": input, "target": target, "weight": weight, "pos_weight": pos_weight}
        return self._jvp(lambda **t: F.binary_cross_entropy_with_logits(**t, reduction=reduction), tensors,
                         tangent, wrt)


def _strided(array: np.ndarray) -> Any:
    """A CPU tensor viewing the array's memory with its strides (no copy; bfloat16 through its bits).

    torch has no negative strides (torch.from_numpy refuses them): such an array becomes `as_strided` over its
    lowest address with the strides' magnitudes, then `flip` on those axes, as a torch user would write it.
    Read-only arrays (a broadcast view) are shared too; torch warns that it could write to them, and it
    does not.
    """
    import torch

    if array.dtype == ml_dtypes.bfloat16:
        return _strided(array.view(np.int16)).view(torch.bfloat16)
    flipped = tuple(axis for axis, stride in enumerate(array.strides) if stride < 0)
    lowest = array[tuple(slice(None, None, -1) if axis in flipped else slice(None) for axis in range(array.ndim))] \
        if flipped else array
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(lowest)
    return tensor.flip(flipped) if flipped else tensor


BACKENDS = [TorchBackend("cpu"), TorchBackend("cuda")]
