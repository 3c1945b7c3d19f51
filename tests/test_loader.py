"""Case files: the shipped set, and one clear error naming file and line for every kind of bad file."""
from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.errors import ConfigError
from conformance.inputs import InputError, materialize
from conformance.loader import load_cases

GOOD_CASE = """\
topic: t
cases:
  - id: a
    description: d
    op: bce
    inputs: {input: [0.5], target: [1]}
"""


def write(tmp_path, text, name="cases.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path):
    with pytest.raises(ConfigError) as info:
        load_cases([path])
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_cases_cover_the_brief(shipped_cases):
    ids = {case.id for case in shipped_cases}
    assert len(ids) == len(shipped_cases)
    assert {"document-bce-mean", "document-bce-with-logits-mean", "document-sigmoid-bce-mean"} <= ids
    ops = Counter(case.op for case in shipped_cases)
    assert ops["bce"] >= 30 and ops["bce_with_logits"] >= 30 and ops["sigmoid_bce"] >= 5
    rules = Counter(case.reject for case in shipped_cases if case.reject)
    assert set(rules) == {"out_of_range", "shape_mismatch", "weight_shape", "invalid_reduction", "dtype",
                          "not_differentiable"}
    edge = [case for case in shipped_cases if "document" not in case.tags]
    assert len(edge) >= 60
    dtypes = {dtype for case in shipped_cases for dtype in case.dtypes}
    assert {"float16", "bfloat16", "float32", "float64", "int64", "bool"} <= dtypes



def test_shipped_gradient_cases_cover_the_issue(shipped_cases):
    gradient = [case for case in shipped_cases if case.grad]
    assert {"grad-document-bce-mean", "grad-document-bce-with-logits-mean"} <= {case.id for case in gradient}
    for op in ("bce", "bce_with_logits"):
        cases = [case for case in gradient if case.op == op]
        assert len(cases) >= 10
        assert {"float16", "bfloat16", "float32", "float64"} <= {dtype for case in cases for dtype in case.dtypes}
        assert {"input", "target"} <= {name for case in cases for name in case.grad}
        assert any(case.grad_output is not None for case in cases)
        assert {case.reduction for case in cases} == {"none", "mean", "sum"}
    assert {"weight", "pos_weight"} <= {name for case in gradient if case.reject for name in case.grad}


def test_defaults_are_merged(tmp_path):
    path = write(tmp_path, """\
        topic: t
        defaults: {op: bce_with_logits, inputs: {input: [1], target: [0]}, reduction: sum}
        cases:
          - {id: a, description: d}
          - {id: b, description: d, reduction: none, inputs: {weight: [2]}}
        """)
    a, b = load_cases([path])
    assert a.op == "bce_with_logits" and a.reduction == "sum"
    assert b.reduction == "none" and set(b.inputs) == {"input", "target", "weight"}
    assert a.source == f"{path}:4"


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "topic: t\ncases:\n  - id: a\n    description: [unclosed\n")
    assert error_of(path).startswith(f"{path}:")
    assert "invalid YAML" in error_of(path)


def test_unknown_key_names_line_and_key(tmp_path):
    path = write(tmp_path, GOOD_CASE + "    colour: blue\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3") and "colour" in message


def test_schema_violation_names_the_offending_value(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("op: bce", "op: mse"))
    message = error_of(path)
    assert message.startswith(f"{path}:5") and "cases/0/op" in message


def test_unknown_symbol_is_a_schema_error(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("[0.5]", "[largest]"))
    assert "cases/0/inputs/input" in error_of(path)


def test_duplicate_key_is_refused(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("op: bce\n", "op: bce\n    op: bce_with_logits\n"))
    message = error_of(path)
    assert "duplicate key 'op'" in message and message.startswith(f"{path}:6")


def test_duplicate_ids_across_files_name_both(tmp_path):
    first = write(tmp_path, GOOD_CASE, "a.yaml")
    write(tmp_path, GOOD_CASE, "b.yaml")
    message = error_of(tmp_path)
    assert "duplicate case id 'a'" in message and str(first) in message


def test_python_tags_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, f"topic: !!python/object/apply:os.system ['touch {marker}']\ncases: []\n")
    assert "invalid YAML" in error_of(path)
    assert not marker.exists()


def test_absurd_sizes_are_refused_before_allocation(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace(
        "inputs: {input: [0.5], target: [1]}",
        "inputs: {input: {generate: full, value: 0.5, shape: [1000000, 1000000]}, target: [1]}"))
    assert "1000000000000 elements" in error_of(path)


def test_missing_target_is_named(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace(", target: [1]", ""))
    assert "has no inputs.target" in error_of(path)


def test_missing_path_and_empty_folder(tmp_path):
    assert "no such case file" in error_of(tmp_path / "nope.yaml")
    (tmp_path / "empty").mkdir()
    assert "no case files" in error_of(tmp_path / "empty")


def test_tolerance_override_needs_a_reason(tmp_path):
    path = write(tmp_path, GOOD_CASE + "    tolerance: {roundings: 20}\n")
    assert "reason" in error_of(path)


# --- hostile files: refused with one line naming file and line, before anything big is built -------

def test_deep_nesting_is_refused_while_composing(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("[0.5]", "[" * 10_000 + "0.5" + "]" * 10_000))
    message = error_of(path)
    assert message.startswith(f"{path}:6") and "nested deeper than" in message


def test_a_literal_deeper_than_a_tensor_can_be_is_refused(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("[0.5]", "[" * 9 + "0.5" + "]" * 9))
    assert "nests lists 9 deep; a tensor has at most 8 dimensions" in error_of(path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["bomb0: &b0 [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]"]
    lines += [f"bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(lines) + "\n" + GOOD_CASE.replace("[0.5]", "*b8"))
    message = error_of(path)
    assert "aliases counted as what they stand for" in message and message.startswith(f"{path}:")


def test_a_self_referring_alias_is_refused(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("[0.5]", "&loop [0.5, *loop]"))
    assert "refers to a value that contains it" in error_of(path)


def test_too_many_values_are_refused(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("[0.5]", "[" + ", ".join(["0.5"] * 30_000) + "]"))
    assert "more than 20000 values" in error_of(path)


def test_a_huge_file_is_refused_unread(tmp_path):
    path = write(tmp_path, GOOD_CASE + "#" * (2 * 2**20) + "\n")
    assert "larger than 1 MiB" in error_of(path)


@pytest.mark.parametrize("value, fragment", [
    ("1" * 5000, "a value of 5000 characters"),  # longer than any value a case needs
    ("2021-13-45", "cannot read this value: ValueError"),  # a timestamp with month 13
    ("{[1, 2]: 3}", "cannot read this value: TypeError"),  # an unhashable key
])
def test_values_yaml_cannot_build_name_their_line(tmp_path, value, fragment):
    path = write(tmp_path, GOOD_CASE + f"    tags: [{value}]\n")
    message = error_of(path)
    assert message.startswith(f"{path}:7") and fragment in message


def test_absurd_exponents_round_without_building_huge_numbers(tmp_path):
    path = write(tmp_path, GOOD_CASE.replace("[0.5]", '["1e999999999", "-1e-999999999", 1e-400]'))
    (case,) = load_cases([path])
    values = materialize(case, "float64").tensors["input"]
    assert list(values) == [np.inf, 0.0, 0.0] and np.signbit(values[1])


SEEDS = [GOOD_CASE, (Path(__file__).parent / "data" / "fault_cases.yaml").read_text()]
HOSTILE = ["!!python/object/apply:os.system ['true']", "&a [*a]", "*nowhere", "[" * 40, "{", "- ", ": :", "\t",
           "1e99999", "-.inf", "!!binary AAAA", "? [1]\n: 2", "<<: *a", "\x00", "'", "%YAML 1.1\n---", "\ufeff",
           "2021-13-45", "9" * 5000, "dtypes: [float32, float32]", "shape: [100000, 100000]", "reduction: [sum]"]


@st.composite
def mutated_yaml(draw):
    """A valid case file with a few random edits: deletions, insertions of hostile fragments, duplicated lines."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["delete", "insert", "fragment", "duplicate"]))
        if edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif edit == "insert":
            text = text[:at] + draw(st.text(max_size=20)) + text[at:]
        elif edit == "fragment":
            text = text[:at] + draw(st.sampled_from(HOSTILE)) + text[at:]
        else:
            lines = text.splitlines(keepends=True) or [""]
            line = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: line + 1] + lines[line:])
    return text


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), mutated_yaml()))
def test_random_and_mutated_files_raise_only_config_errors(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cases = load_cases([path])
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    for case in cases:  # what loads must build, or fail as a case (InputError), never otherwise
        for dtype in case.dtypes:
            try:
                materialize(case, dtype)
            except InputError:
                pass


@pytest.mark.parametrize("extra, fragment", [
    ("    grad: [input]\n    op: sigmoid_bce\n    order: 2\n", "order 2 and forward mode are specified for bce, "
                                                             "bce_with_logits only, not 'sigmoid_bce'"),
    ("    grad: [pos_weight]\n", "grad names pos_weight, which the case's inputs do not have"),
    ("    grad_output: [2]\n", "grad_output without grad"),
    ("    grad: [input]\n    printed: {float32: '0.1'}\n", "printed values are loss values"),
])
def test_gradient_fields_are_checked(tmp_path, extra, fragment):
    text = GOOD_CASE.replace("    op: bce\n", "") + extra
    if "op:" not in extra:
        text += "    op: bce\n"
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}:3") and fragment in message


def test_unknown_gradient_name_is_a_schema_error(tmp_path):
    path = write(tmp_path, GOOD_CASE + "    grad: [reduction]\n")
    assert "cases/0/grad/0" in error_of(path)


def test_gradient_case_fields(tmp_path):
    path = write(tmp_path, GOOD_CASE + "    grad: [target, input]\n    grad_output: [3]\n    reduction: none\n")
    (case,) = load_cases([path])
    assert case.grad == ("target", "input") and case.checks == ("target", "input") and case.grad_output == [3]
