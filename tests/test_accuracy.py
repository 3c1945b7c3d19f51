"""The accuracy atlas: regions, sampling, errors in ulps, budgets (with the mutant they must catch), reports, CLI."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import conformance
from conformance.accuracy import sampling
from conformance.accuracy.atlas import build
from conformance.accuracy.budget import default_budget_file, judge, load_budget
from conformance.accuracy.metrics import AgreementAccumulator, RowAccumulator, _quantile, truth, ulp_errors
from conformance.accuracy.records import Row
from conformance.accuracy.regions import load_regions, select
from conformance.accuracy.sampling import from_ordinal, ordinal, plan
from conformance.cli import main
from conformance.cli.main import parser
from conformance.dtypes import NUMPY_DTYPES
from conformance.errors import ConfigError
from conformance.registry import select as select_backends

from .accuracy_mutants import AccurateLogits, NaiveTailAbove20
from .mutants import LogInsteadOfLog1p

BUDGET = str(default_budget_file())


@pytest.fixture(scope="module")
def regions():
    return load_regions()


def _atlas(regions, entries, pattern, dtypes, points=2048):
    return build(select(regions, [pattern], None, False), entries, dtypes, points, progress=False)


def _region_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "regions.yaml"
    path.write_text("topic: test regions\nregions:\n" + body)
    return path


# --- regions and sampling ---------------------------------------------------------------------

def test_shipped_regions_cover_the_ranges_targets_and_exhaustive_sweeps(regions):
    logits = {(r.input, r.target_kind) for r in regions if r.op == "bce_with_logits" and not r.exhaustive}
    for span in [(-100, -20), (-20, -1), (-1, 1), (1, 20), (20, 100)]:
        for kind in ("y = 0", "y = 1", "soft y", "soft y, pos_weight"):
            assert (span, kind) in logits, (span, kind)
    probabilities = [r for r in regions if r.op == "bce" and not r.exhaustive]
    assert {r.target_kind for r in probabilities} == {"y = 0", "y = 1", "soft y"} and len(probabilities) == 9
    exhaustive = [r for r in regions if r.exhaustive]
    assert {(r.op, r.target_kind) for r in exhaustive} == {(op, k) for op in ("bce", "bce_with_logits")
                                                             for k in ("y = 0", "y = 1")}
    assert all("float32" in r.dtypes and "float64" not in r.dtypes for r in exhaustive)


@pytest.mark.parametrize("body, fragment", [
    ("  - {id: a, op: bce, input: [0, 1], target: 2, seed: 1}\n", "regions.yaml:3: regions/0/target"),
    ("  - {id: a, input: [0, 1], target: 0, seed: 1}\n", "has no op"),
    ("  - {id: a, op: bce, input: [0, 1], target: 0, seed: 1, pos_weight: 2}\n", "bce takes no pos_weight"),
    ("  - {id: a, op: bce, input: [0, 1], target: 0, seed: 1}\n  - {id: a, op: bce, input: [0, 1], target: 1, seed: 2}\n",
     "duplicate region id 'a'"),
    ("  - {id: a, op: bce, input: [0, 1], target: 0, seed: 1, colour: red}\n", "colour"),
])
def test_region_file_errors_name_file_and_line(tmp_path, body, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_regions(_region_file(tmp_path, body))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_ordinal_keys_count_representable_values(dtype):
    keys = np.arange(-300, 301)
    values = from_ordinal(keys, dtype).astype(np.float64)
    assert (np.diff(values) > 0).all() and values[300] == 0
    assert (ordinal(from_ordinal(keys, dtype)) == keys).all()
    assert (sampling._consecutive(-300, 301, dtype).view(np.uint8) == from_ordinal(keys, dtype).view(np.uint8)).all()
    assert ordinal(np.array([-0.0]).astype(NUMPY_DTYPES[dtype]))[0] == 0


def test_a_narrow_region_is_swept_completely_and_its_maximum_is_an_upper_bound(tmp_path):
    hard, soft = load_regions(_region_file(tmp_path, "  - {id: a, op: bce_with_logits, input: [1, 2], target: 0, seed: 1}\n"
                                                     "  - {id: b, op: bce_with_logits, input: [1, 2], target: [0, 1], seed: 2}\n"))
    swept = plan(hard, "float16")
    values = np.concatenate([s.input for s in swept.chunks()]).astype(np.float64)
    assert swept.values == swept.points == values.size == 1025 and swept.exhaustive
    assert values[0] == 1 and values[-1] == 2 and (np.diff(values) == 2.0**-10).all()
    assert plan(soft, "float16").complete and not plan(soft, "float16").exhaustive  # random targets: sampled
    assert not plan(hard, "float32").complete and plan(hard, "float32").points == hard.points


def test_sampling_is_reproducible_bounded_and_ascending(regions, monkeypatch):
    monkeypatch.setattr(sampling, "CHUNK", 300)
    region = next(r for r in regions if r.id == "logits-negative-soft-pw")
    swept = plan(region, "float32", points=1000)
    assert (swept.grid, swept.random) == (500, 500)
    first, second = list(swept.chunks()), list(swept.chunks())
    assert [c.input.size for c in first] == [300, 200, 300, 200]
    for a, b in zip(first, second):
        assert a.input.tobytes() == b.input.tobytes() and a.target.tobytes() == b.target.tobytes()
        assert (np.diff(a.input.astype(np.float64)) >= 0).all()
        assert a.input.min() >= -20 and a.input.max() <= -1 and a.pos_weight.min() >= np.float32(0.1)
        assert a.hard_target is None and 0 <= a.target.min() and a.target.max() <= 1


def test_an_exhaustive_region_walks_every_value_in_bounded_chunks(regions, monkeypatch):
    monkeypatch.setattr(sampling, "CHUNK", 1 << 12)
    region = next(r for r in regions if r.id == "logits-all-positive-y0")
    swept = plan(region, "float32")
    assert swept.points == 0x7F7FFFFF + 1 and swept.exhaustive  # every finite float32 >= 0
    chunks = swept.chunks()
    head = [next(chunks) for _ in range(3)]  # a slice: the whole walk is the --exhaustive run
    bits = np.concatenate([c.input for c in head]).view(np.uint32)
    assert all(c.input.size == 1 << 12 for c in head) and (bits == np.arange(3 << 12)).all()


# --- errors and statistics --------------------------------------------------------------------

def test_ulp_errors_tiny_results_and_overflow():
    exact = np.array([1.0, 1.0 + 2.0**-30, 2.0**-140, 0.0, 1e39, 1e39, 3.0])
    t = truth(exact, "float32")
    got = np.array([1.0 + 2.0**-23, 1.0, 0.0, 2.0**-149, np.inf, 3.4e38, np.nan])
    errors, mismatched = ulp_errors(got, t)
    assert errors[:4].tolist() == [1.0, 2.0**-7, 2.0**-140 / 2.0**-149, 1.0]
    assert t.tiny.tolist() == [False, False, True, True, False, False, False]
    assert errors[4] == 0 and np.isinf(errors[5]) and np.isinf(errors[6])
    assert mismatched.tolist() == [False] * 4 + [False, True, True]


def test_quantiles_are_read_within_one_bin_above_the_exact_ones(regions):
    errors = np.exp(np.random.default_rng(5).uniform(-8, 12, 100_000))
    accumulator = RowAccumulator("b", plan(regions[0], "float32", points=10))
    accumulator.counts += np.bincount(errors.view(np.int64) >> 46, minlength=accumulator.counts.size)
    for q in (0.5, 0.99):
        ratio = _quantile(accumulator.counts, q) / np.quantile(errors, q)
        assert 1 <= ratio <= 1 + 1 / 32, q


def test_agreement_distances():
    exact = np.array([1.0, 2.0, 4.0])
    agreement = AgreementAccumulator("op", "float32", ["reference", "a", "b"])
    a, b = np.array([1.0, 2.0, np.inf]), np.array([1.0 + 2.0**-22, 2.0, np.inf])
    t = truth(exact, "float32")
    agreement.add({"a": (a, ulp_errors(a, t)[0]), "b": (b, ulp_errors(b, t)[0])}, t)
    found = {(x.a, x.b): x for x in agreement.finish()}
    assert found[("a", "b")].max_ulp == 2 and found[("a", "b")].beyond_one_ulp == 1  # the same infinity agrees
    assert np.isinf(found[("reference", "a")].max_ulp) and found[("reference", "a")].points == 3


# --- the atlas, the known defect and the gate ------------------------------------------------

def test_atlas_rows_worst_points_and_bounds(regions):
    atlas = _atlas(regions, select_backends(["numpy"]), "^probs-(near-0|middle)-y[01]$", ["float16", "float64"], 16384)
    assert len(atlas.rows) == 8 and not any(r.error for r in atlas.rows)
    for row in atlas.rows:
        w = row.worst
        assert w is not None and row.points == next(s.points for s in atlas.swept if (s.region, s.dtype) == (row.region, row.dtype))
        assert row.median_ulp <= row.p99_ulp <= row.max_ulp * (1 + 1 / 32) + 1e-300
        assert row.bound == ("upper" if row.dtype == "float16" else "lower")  # float16 has few enough values
        assert 0 <= w.input <= 1 and w.target == float(row.region[-1])
    assert {(a.a, a.b) for a in atlas.agreement} == {("reference", "numpy")}


def test_the_pytorch_defect_stands_out_and_is_a_known_deviation(regions):
    pytest.importorskip("torch")
    atlas = _atlas(regions, select_backends(["torch-cpu"]), "^logits-(very-)?(negative|positive)-y[01]$",
                   ["float32", "float64"])
    worst = {(r.dtype, r.region): r.max_ulp for r in atlas.rows}
    for dtype, precision in (("float32", 24), ("float64", 53)):
        defect = max(worst[(dtype, "logits-negative-y0")], worst[(dtype, "logits-very-negative-y0")])
        others = max(v for (d, region), v in worst.items() if d == dtype and not region.endswith("negative-y0"))
        assert defect >= 2.0 ** (precision - 2) and others <= 13, (dtype, defect, others)
    judgement = judge(load_budget(Path(BUDGET)), atlas.rows)
    assert judgement.passed and not judgement.stale
    known = [v for v in judgement.verdicts if v.status == "known"]
    assert {v.row.region for v in known} == {"logits-negative-y0", "logits-very-negative-y0"}
    assert all(v.deviation.issue == "pytorch#195529" for v in known)


def test_a_mutant_accurate_everywhere_but_one_region_is_caught_by_the_budget(regions):
    mutant, variant = NaiveTailAbove20(), AccurateLogits()
    atlas = _atlas(regions, conformance.entries(mutant, variant), "^logits-", ["float32", "float64"])
    judgement = judge(load_budget(Path(BUDGET)), atlas.rows)
    breaches = {(v.row.backend, v.row.dtype, v.row.region) for v in judgement.verdicts if v.status == "breach"}
    assert breaches == {(mutant.name, d, r) for d in ("float32", "float64") for r in NaiveTailAbove20.breaches}
    assert all(v.status == "within" for v in judgement.verdicts if v.row.backend == variant.name)
    assert not judgement.passed
    pairs = {(a.dtype, a.a, a.b): a.max_ulp for a in atlas.agreement}
    for dtype in ("float32", "float64"):  # the agreement matrix names the outlier
        assert pairs[(dtype, "reference", mutant.name)] > 1e6 > 13 >= pairs[(dtype, "reference", variant.name)]


def test_the_gate_sees_what_the_tolerance_admits(regions):
    """log(1 - p) for log1p(-p) loses p where p is tiny: the accuracy gate breaches, as `run` flags it (tests/mutants.py)."""
    variant = LogInsteadOfLog1p()
    atlas = _atlas(regions, conformance.entries(variant), "^probs-near-0-y0$", ["float32", "float64"])
    verdicts = judge(load_budget(Path(BUDGET)), atlas.rows).verdicts
    assert [v.status for v in verdicts] == ["breach", "breach"]
    assert all(v.row.max_ulp > 1e6 and v.row.worst.got == 0 for v in verdicts)


def _row(**changes) -> Row:
    fields = dict(backend="torch-cpu", op="bce_with_logits", dtype="float32", region="logits-negative-y0", points=10,
                  bound="lower", median_ulp=0.3, p99_ulp=1.0, max_ulp=2.0, worst=None, tiny_points=0, tiny_max_rel=None,
                  tiny_worst=None, nonfinite=0, seconds=0.0)
    return Row(**{**fields, **changes})


def test_known_deviations_excuse_inaccuracy_only_and_go_stale():
    budget = load_budget(Path(BUDGET))
    assert judge(budget, [_row(max_ulp=1e7)]).verdicts[0].status == "known"
    assert judge(budget, [_row(max_ulp=1e7, nonfinite=3)]).verdicts[0].status == "breach"  # NaN is never excused
    assert judge(budget, [_row(error="raised RuntimeError: boom")]).verdicts[0].status == "error"
    within = judge(budget, [_row(max_ulp=2.0)])
    assert within.passed and [d.issue for d in within.stale] == ["pytorch#195529"]
    assert judge(budget, [_row(op="sigmoid_bce")]).verdicts[0].status == "ungated"


@pytest.mark.parametrize("text, fragment", [
    ("description: d\nbudgets:\n  - {op: bce, max_ulp: 3}\n", "budget.yaml:3: budgets/0: 'reason' is a required"),
    ("description: d\nbudgets:\n  - {op: bce, reason: 'a reason of enough length'}\n", "budgets/0"),
    ("description: d\nbudgets:\n  - {op: bce, max_ulp: -1, reason: 'a reason of enough length'}\n", "budgets/0/max_ulp"),
])
def test_budget_file_errors_name_file_and_line(tmp_path, text, fragment):
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_budget(path)


class _Fails(AccurateLogits):
    """Accurate on the first call; then raises (or is interrupted, or returns float64)."""

    kind = "broken"

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure, self.calls = failure, 0

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        self.calls += 1
        result = super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        if self.calls == 1:
            return result
        if self.failure == "interrupt":
            raise KeyboardInterrupt
        if self.failure == "dtype":
            return result.astype(np.float64)
        raise RuntimeError("device lost")


@pytest.mark.parametrize("failure, message", [
    ("raise", "failed: raised on input the specification accepts: RuntimeError: device lost"),
    ("dtype", "failed: dtype float64, expected float32"),
    ("interrupt", "interrupted after 300 of 1,000 points"),
])
def test_a_failing_backend_keeps_what_was_measured(regions, monkeypatch, failure, message):
    monkeypatch.setattr(sampling, "CHUNK", 300)
    broken = _Fails(failure)
    atlas = _atlas(regions, conformance.entries(broken, AccurateLogits()), "^logits-(near-zero|positive)-y0$", ["float32"], 1000)
    first = next(r for r in atlas.rows if r.backend == broken.name)
    assert first.error == message and first.points == 300 and first.max_ulp is not None and first.bound == "lower"
    assert atlas.interrupted == (failure == "interrupt")
    rows = {(r.backend, r.region) for r in atlas.rows}
    assert len(rows) == (2 if failure == "interrupt" else 4)  # after Ctrl-C no further region is swept
    assert all(r.points == (300 if failure == "interrupt" else 1000) for r in atlas.rows if r.backend != broken.name)


# --- command line -----------------------------------------------------------------------------

def run(capsys, *argv):
    code = main(["accuracy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_prints_the_atlas_and_writes_json(capsys, tmp_path):
    target = tmp_path / "atlas.json"
    code, out, _ = run(capsys, "--backend", "numpy", "--dtype", "float32", "-k", "^probs-near-1", "--points", "512",
                       "--format", "json", "--output", str(target), "--budget", BUDGET)
    assert code == 0 and "BCELoss, float32" in out and "max ulp" in out and "-> passed" in out
    document = json.loads(target.read_text())
    assert document["format"] == "bce-accuracy-atlas" and document["version"] == 1 and document["budget"]["passed"]
    row = document["rows"][0]
    assert {"backend", "op", "dtype", "region", "points", "bound", "median_ulp", "p99_ulp", "max_ulp", "worst",
            "tiny_points", "tiny_max_rel", "nonfinite", "seconds", "budget"} <= set(row)
    assert row["budget"]["status"] == "within" and set(row["worst"]) >= {"input", "target", "got", "exact", "ulp_error"}
    assert {s["region"] for s in document["regions"]} == {"probs-near-1-y0", "probs-near-1-y1", "probs-near-1-soft"}
    assert document["agreement"][0]["a"] == "reference"


def test_markdown(capsys):
    code, out, _ = run(capsys, "--backend", "numpy", "--dtype", "float64", "-k", "^probs-middle-y1$", "--points", "256",
                       "--format", "markdown")
    assert code == 0 and out.startswith("# BCE accuracy atlas") and "## BCELoss, float64" in out and "| region" in out


def test_a_budget_breach_exits_1(capsys):
    code, out, _ = run(capsys, "--backend", "tests.accuracy_mutants:NaiveTailAbove20", "--dtype", "float32",
                       "-k", "very-positive", "--points", "512", "--budget", BUDGET)
    assert code == 1 and "OVER: max" in out and "logits-very-positive-y1" in out and "-> FAILED" in out


@pytest.mark.parametrize("argv, fragment", [
    (["-k", "("], "invalid regular expression"),
    (["-k", "^nothing$"], "no region matches"),
    (["-k", "^logits-all-"], "exhaustive regions need --exhaustive"),
    (["--budget", "nowhere.yaml"], "nowhere.yaml: no such budget file"),
    (["--regions", "nowhere.yaml"], "nowhere.yaml: no such regions file"),
    (["--backend", "no-such-backend"], "unknown backend"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err


def test_exhaustive_regions_report_upper_bounds(capsys, tmp_path):
    regions = _region_file(tmp_path, "  - {id: all-y1, op: bce, input: [0.5, 1], target: 1, points: all, seed: 1, "
                                     "dtypes: [float16]}\n")
    code, out, _ = run(capsys, "--regions", str(regions), "--exhaustive", "--backend", "numpy", "--format", "json")
    row = json.loads(out)["rows"][0]
    assert code == 0 and row["bound"] == "upper" and row["points"] == 1025 and row["max_ulp"] <= 9


def test_figures(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, _ = run(capsys, "--backend", "numpy", "--op", "bce_with_logits", "--dtype", "float32", "--points", "512",
                       "--plot", str(tmp_path / "figures"))
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["error-bce_with_logits-float32.png", "sigmoid-equivalence-numpy.png"]
    for name in written:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000


@pytest.mark.parametrize("document", ["docs/accuracy.md"])
def test_documented_commands_parse(document):
    text = (Path(__file__).resolve().parent.parent / document).read_text(encoding="utf-8")
    commands = [c for c in re.findall(r"python -m conformance accuracy([^#\n`]*)", text) if "[" not in c]
    assert len(commands) >= 4
    for command in commands:
        args = parser().parse_args(["accuracy", *shlex.split(command)])
        for path in (args.budget, args.regions):
            assert path is None or path.is_file(), path
