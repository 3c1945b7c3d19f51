"""Issue 12's coverage: memory layouts, the new generators and case fields, second-order and forward-mode
references (cross-checked by numerical differentiation), and the shipped cases that use them."""
from __future__ import annotations

import textwrap

import ml_dtypes
import mpmath
import numpy as np
import pytest

from bce_reference import exact, gradients
from bce_reference.derivatives import (
    bce_input2,
    bce_target2,
    forward_mode,
    logits_input2,
    logits_target2,
)
from conformance import runner
from conformance.backends.numpy_backend import NumpyBackend
from conformance.errors import ConfigError
from conformance.execution import Call, execute
from conformance.inputs import LAYOUTS, arrange, arranged, layout_applies, tensor
from conformance.loader import load_cases
from conformance.options import layouts
from conformance.registry import Entry
from conformance.report import rerun_command
from conformance.results import Result, Status

DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_a_layout_keeps_shape_dtype_and_bits(layout, dtype):
    array = np.array([[[1, -0.0, 3], [4, 5, np.nan]]] * 2).astype(dtype)  # constant along axis 0: broadcastable
    arranged_array = arrange(array, layout)
    assert arranged_array is not None and arranged_array.shape == array.shape and arranged_array.dtype == array.dtype
    assert arranged_array.tobytes() == array.tobytes()
    assert not np.shares_memory(arranged_array, array)


def test_each_layout_is_what_it_says():
    array = np.arange(24.0).reshape(2, 3, 4)
    assert arrange(array, "c").flags.c_contiguous
    assert arrange(array, "fortran").flags.f_contiguous and not arrange(array, "fortran").flags.c_contiguous
    transposed = arrange(array, "transposed")
    assert transposed.strides[-1] > transposed.strides[-2] and not transposed.flags.forc
    strided = arrange(array, "strided")
    assert strided.strides[-1] == 2 * array.itemsize and not strided.flags.forc and strided.base is not None
    assert all(s < 0 for s in arrange(array, "negative").strides)
    constant = np.ones((2, 3, 4))
    constant[1] = 2  # varies along axis 0 only
    broadcast = arrange(constant, "broadcast")
    assert broadcast.strides[0] != 0 and broadcast.strides[1:] == (0, 0) and not broadcast.flags.writeable


def test_layouts_that_do_not_apply():
    assert arrange(np.arange(3.0), "fortran") is None and arrange(np.arange(3.0), "transposed") is None
    assert arrange(np.array(1.0), "negative") is None and arrange(np.arange(3.0), "broadcast") is None
    assert not layout_applies({"input": np.arange(3.0), "target": np.arange(3.0)}, "fortran")
    assert layout_applies({"input": np.arange(3.0), "target": np.ones(3)}, "broadcast")
    assert arranged({"x": np.arange(3.0)}, "fortran")["x"].flags.c_contiguous


class _Recorder(NumpyBackend):
    """Records the strides and writeability of what it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, ...], bool]] = []

    def bce(self, input, target, *, weight, reduction):
        self.seen.append((input.strides, input.flags.writeable))
        return super().bce(input, target, weight=weight, reduction=reduction)


@pytest.mark.parametrize("layout", ["fortran", "transposed", "strided", "negative"])
def test_the_adapter_receives_the_layout_itself(layout):
    backend = _Recorder()
    tensors = {"input": np.full((2, 3), 0.25), "target": np.eye(2, 3)}
    execution = execute(backend, Call("bce", tensors, "none", layout=layout))
    assert execution.outcome.error is None
    assert backend.seen == [(arrange(tensors["input"], layout).strides, True)]


def test_torch_receives_the_strides_without_a_copy():
    pytest.importorskip("torch")
    from conformance.backends.torch_backend import _strided

    for layout in ("fortran", "transposed", "strided", "broadcast"):
        array = arrange(np.ones((3, 4), dtype=np.float32) * np.arange(4, dtype=np.float32), layout)
        if array is None:
            continue
        tensor_ = _strided(array)
        assert tensor_.data_ptr() == array.ctypes.data, layout
        assert tuple(s * 4 for s in tensor_.stride()) == array.strides, layout
    negative = arrange(np.arange(6, dtype=np.float32).reshape(2, 3), "negative")
    assert _strided(negative).numpy().tolist() == negative.tolist()


def test_the_layout_is_part_of_the_key_and_the_rerun_command():
    result = Result("numpy", "a", "bce", "float32", Status.FAILED, "m", "cases/x.yaml:3", layout="fortran")
    assert result.key == ("numpy", "a", "float32", None, "fortran")
    assert rerun_command(result, "numpy").endswith("--layouts fortran")
    assert "--layouts" not in rerun_command(Result("numpy", "a", "bce", "float32", Status.FAILED, "m", "x:1"), "numpy")
    assert layouts("all") == LAYOUTS and layouts("c,negative") == ("c", "negative")


@pytest.mark.parametrize("kind, extra", [("normal", "mean: 0, std: 3"), ("lognormal", "mean: 0, std: 1")])
def test_normal_generators_round_once_and_refuse_integers(kind, extra):
    spec = {"generate": kind, "shape": [500], "seed": 3, **dict(item.split(": ") for item in extra.split(", "))}
    values = tensor(spec, "bfloat16")
    assert values.dtype == ml_dtypes.bfloat16 and len(np.unique(values)) > 50
    if kind == "lognormal":
        assert (values.astype(np.float64) > 0).all()
    with pytest.raises(ValueError, match="non-integer"):
        tensor(spec, "int64")


def _write(tmp_path, body: str):
    path = tmp_path / "cases.yaml"
    path.write_text("topic: t\ncases:\n  - id: a\n    description: d\n    op: bce\n"
                    "    inputs: {input: [0.5], target: [1]}\n" + textwrap.indent(textwrap.dedent(body), "    "))
    return path


@pytest.mark.parametrize("body, words", [
    ("layouts: [c, diagonal]\n", [":7", "layouts"]),
    ("grad: [input]\norder: 3\n", [":8", "order"]),
    ("grad: [input]\nmode: sideways\n", [":8", "mode"]),
    ("order: 2\n", [":3", "order without grad"]),
    ("grad: [input]\ntangent: [1]\n", [":3", "tangent is for order 2"]),
    ("grad: [input]\norder: 2\nmode: forward\n", [":3", "forward mode has order 1"]),
    ("grad: [input]\nmode: forward\ngrad_output: 1\n", [":3", "tangent, not a grad_output"]),
])
def test_new_fields_are_refused_with_file_and_line(tmp_path, body, words):
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_cases([path])
    assert str(info.value).startswith(f"{path}:")
    for word in words:
        assert word in str(info.value)


def _numerical(function, at: float) -> mpmath.mpf:
    with exact.CTX.workprec(256):
        return exact.CTX.diff(function, at)


@pytest.mark.parametrize("p, y", [(0.3, 0.2), (0.9, 1.0), (0.01, 0.0), (0.5, 0.75)])
def test_bce_second_order_is_the_derivative_of_the_exact_gradient(p, y):
    """Away from the eps floor, PyTorch's double-backward formula is the derivative of the first-order one."""
    by_p = _numerical(lambda q: exact.bce_grad_input(q, y, 1e-12)[0], p)
    by_y = _numerical(lambda t: exact.bce_grad_input(p, t, 1e-12)[0], y)
    assert abs(bce_input2(p, y, 1e-12)[0] / by_p - 1) < 1e-9
    assert abs(bce_target2(p, y, 1e-12)[0] / by_y - 1) < 1e-20


@pytest.mark.parametrize("x, y, pw", [(-3.0, 0.25, 2.0), (0.5, 1.0, 1.0), (20.0, 0.0, 7.0), (-40.0, 1.0, 0.5)])
def test_logits_second_order_is_the_derivative_of_the_exact_gradient(x, y, pw):
    by_x = _numerical(lambda v: exact.bce_with_logits_grad_input(v, y, pw)[0], x)
    by_y = _numerical(lambda t: exact.bce_with_logits_grad_input(x, t, pw)[0], y)
    assert abs(logits_input2(x, y, pw)[0] / by_x - 1) < 1e-30
    assert abs(logits_target2(x, y, pw)[0] / by_y - 1) < 1e-30


def test_forward_mode_is_the_derivative_of_the_loss_along_the_tangent():
    x, y, v = np.array([-3.0, 0.5, 4.0]), np.array([0.0, 1.0, 0.25]), np.array([1.0, -2.0, 0.5])
    tensors = {"input": x, "target": y, "pos_weight": np.array([2.0])}
    got = forward_mode("bce_with_logits", tensors, "mean", ["input", "target"], v)

    def loss(moved: str, h: mpmath.mpf) -> mpmath.mpf:
        terms = [exact.bce_with_logits(float(a) if moved != "input" else exact.CTX.mpf(a) + h * b,
                                       float(t) if moved != "target" else exact.CTX.mpf(t) + h * b, 2.0)[0]
                 for a, t, b in zip(x, y, v)]
        return exact.CTX.fsum(terms) / 3

    for name in ("input", "target"):
        assert float(got[name].value) == pytest.approx(float(_numerical(lambda h, n=name: loss(n, h), 0)), rel=1e-15)
    # reduction='none': the forward mode is the first-order vector-Jacobian product with grad_output = tangent
    unreduced = forward_mode("bce_with_logits", tensors, "none", ["input"], v)["input"].value
    assert unreduced.tolist() == gradients("bce_with_logits", tensors, "none", ["input"], v)["input"].value.tolist()


def test_shipped_cases_reach_rank_3_and_4_every_layout_and_higher_orders(shipped_cases):
    ranks = {np.asarray(tensor(case.inputs["input"], "float64")).ndim for case in shipped_cases}
    assert {3, 4} <= ranks
    layouts = {layout for case in shipped_cases for dtype in case.dtypes
               for layout in runner.layouts_of(case, dtype, case.layouts)}
    assert layouts == set(LAYOUTS)
    assert {"grad", "grad2", "jvp"} <= {case.derivative for case in shipped_cases if case.grad}


def test_a_backend_without_higher_orders_is_unsupported_there(shipped_cases):
    class FirstOrderOnly(NumpyBackend):
        name = "first-order-only"
        bce_grad2 = bce_with_logits_grad2 = bce_jvp = bce_with_logits_jvp = None

    cases = [case for case in shipped_cases if case.id in ("grad2-document-bce-mean", "jvp-document-bce-mean")]
    outcome = runner.run(cases, [Entry("first-order-only", "test", FirstOrderOnly())], ["float64"], progress=False,
                         isolation=None)
    assert {r.status for r in outcome.results} == {Status.UNSUPPORTED}
    assert {r.message.split(" capability")[0] for r in outcome.results} == {
        "first-order-only has no second-order", "first-order-only has no forward-mode"}


def test_reports_name_the_layout():
    from conformance.report import render_junit, render_table
    from conformance.results import BackendInfo, Run

    results = [Result("numpy", "a", "bce", "float32", Status.FAILED, "differs", "cases/x.yaml:3", layout=layout)
               for layout in ("c", "negative")]
    run = Run([BackendInfo("numpy", "built-in", True)], results)
    assert "float32-negative" in render_table(run) and "--layouts negative" in render_table(run)
    assert 'name="a[float32-negative]"' in render_junit(run) and 'name="a[float32]"' in render_junit(run)
