"""Render a run: a terminal table (tabulate), Markdown, JSON (docs/report-format.md) and JUnit XML."""
from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import sys
from collections import Counter, defaultdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable
from xml.etree import ElementTree as ET

from tabulate import tabulate

from .dtypes import NUMPY_DTYPES
from .gates import coverage, coverage_text, failing, missing_required
from .results import (
    AS_SPECIFIED,
    EXPECTED,
    GATE_FAILURES,
    NOT_REPRODUCED,
    NOT_RUN,
    UNEXPECTED_PASS,
    BackendInfo,
    Result,
    Run,
    Status,
    json_safe,
)

FORMATS = ("table", "markdown", "json", "junit")
FORMAT = "bce-conformance-report"
REPORT_VERSION = 1
STATUSES = tuple(Status)
WRT_ORDER = (None, "input", "target", "weight", "pos_weight")


def _wrt_order(wrt: str | None) -> tuple[int, str]:
    """Loss first, then one tensor at a time, then combinations (a property checking several gradients)."""
    return (WRT_ORDER.index(wrt), "") if wrt in WRT_ORDER else (len(WRT_ORDER), str(wrt))


def checked(wrt: str | None) -> str:
    """What a result checks: the loss value, or the gradient by one tensor."""
    return "loss" if wrt is None else f"d/d {wrt}"


def _display_path(path: str) -> str:
    """Relative to the working directory when the file lies under it (a results file may name no file at all)."""
    if not path:
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


VERDICT_OPTIONS = {"--timeout": True, "--memory-limit": True, "--expectations": True,
                   "--strict-expectations": False, "--require-grad": False}
"""The options of `run` that change a verdict, and whether each takes a value: a rerun command repeats them."""


def verdict_options(command: str) -> list[str]:
    """The verdict-affecting options (VERDICT_OPTIONS) of a run's command line, in order."""
    try:
        words = shlex.split(command)
    except ValueError:  # a hand-edited results file: nothing to repeat
        return []
    kept: list[str] = []
    for number, word in enumerate(words):
        name = word.split("=", 1)[0]
        if name in VERDICT_OPTIONS:
            takes = VERDICT_OPTIONS[name] and "=" not in word and number + 1 < len(words)
            kept += [word, words[number + 1]] if takes else [word]
    return kept


def in_layout(result: Result) -> str:
    """The result's dtype, and its memory layout where it is not C order: 'float32-fortran'."""
    return result.dtype if result.layout == "c" else f"{result.dtype}-{result.layout}"


def rerun_command(result: Result, selector: str, command: str = "") -> str:
    """The command that reruns just this result; `selector` is the `--backend` argument of its backend, and the
    options of the run's `command` that affect a verdict come along. Every argument is quoted; a result's own
    `rerun` is one the harness built (reading a file drops it)."""
    if result.rerun:
        return result.rerun
    path = _display_path(result.source.rsplit(":", 1)[0])
    return shlex.join(["python", "-m", "conformance", "run", "--cases", path, "--backend", selector, "--dtype",
                       result.dtype, "-k", "^" + re.escape(result.case_id) + "$",
                       *([] if result.layout == "c" else ["--layouts", result.layout]), *verdict_options(command)])


_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on (escape sequences, carriage return, bidirectional overrides): all but newline."""


def printable(text: str) -> str:
    """`text` with each control character written as an escape (\\x1b), so a file cannot drive the terminal (nor
    make XML 1.0, which has no such characters, invalid)."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}" if ord(match.group()) < 0x100
                        else f"\\u{ord(match.group()):04x}", text)


def totals(run: Run) -> Counter:
    return Counter(str(r.status) for r in run.results)


def coverage_rows(run: Run) -> list[dict[str, Any]]:
    """The `coverage` array of a JSON report."""
    return [{"backend": backend, "judged": judged, "specified": specified}
            for backend, (judged, specified) in coverage(run).items()]


def shown_statuses(counts: Counter) -> list[Status]:
    """The statuses a table shows: unsupported and unverified only where some result has them."""
    return [s for s in STATUSES if s not in (Status.UNSUPPORTED, Status.UNVERIFIED) or counts[str(s)]]


def marked(run: Run) -> Counter:
    """How many results an expectations manifest marked, per mark."""
    return Counter(r.expectation for r in run.results if r.expectation)


def expectation_counts(run: Run) -> dict[str, int]:
    """The `expectations` object of a JSON report."""
    counts = marked(run)
    return {mark: counts[mark] for mark in (EXPECTED, UNEXPECTED_PASS)}


def _worst(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summary(run: Run) -> list[dict[str, Any]]:
    """One row per backend x op x dtype x checked value (loss, or a gradient): statuses, worst error, headroom."""
    groups: dict[tuple[str, str, str | None, str], list[Result]] = defaultdict(list)
    for result in run.results:
        groups[(result.backend, result.op, result.wrt, result.dtype)].append(result)
    backend_order = {name: i for i, name in enumerate(dict.fromkeys(r.backend for r in run.results))}
    dtype_order = {name: i for i, name in enumerate(NUMPY_DTYPES)}
    rows = []
    for (backend, op, wrt, dtype), results in sorted(
        groups.items(),
        key=lambda item: (backend_order[item[0][0]], item[0][1], _wrt_order(item[0][2]), dtype_order[item[0][3]]),
    ):
        counts = Counter(r.status for r in results)
        compared = [r for r in results if r.status in (Status.PASSED, Status.FAILED)]
        worst = max((r for r in compared if r.max_ulp_error is not None), key=lambda r: r.max_ulp_error or 0.0, default=None)
        rows.append({
            "backend": backend, "op": op, "wrt": wrt, "dtype": dtype,
            "ran": len(results) - sum(counts[s] for s in NOT_RUN),
            **{str(s): counts[s] for s in STATUSES},
            **{mark: sum(r.expectation == mark for r in results) for mark in (EXPECTED, UNEXPECTED_PASS)},
            "as_specified": sum(r.status == Status.PASSED and r.matched == AS_SPECIFIED for r in results),
            "worst_ulp": _worst([r.max_ulp_error for r in compared]),
            "worst_ulp_matched": worst.matched if worst is not None and worst.status == Status.PASSED else "",
            "worst_headroom": _worst([r.headroom for r in compared]),
        })
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def _worst_ulp(row: dict[str, Any]) -> str:
    """The worst error in ulps from the exact value, naming the reference it matched where that is not the exact one."""
    text = _fmt(row["worst_ulp"])
    return f"{text} ({row['worst_ulp_matched']})" if row["worst_ulp_matched"] == AS_SPECIFIED else text


def as_specified(run: Run) -> list[Result]:
    """Passes that only PyTorch's algorithm in the dtype admits (not the exact value's tolerance)."""
    return [r for r in run.results if r.status == Status.PASSED and r.matched == AS_SPECIFIED]


def _closing_line(run: Run) -> str:
    counts = totals(run)
    line = ", ".join(f"{counts[str(s)]} {s}" for s in STATUSES)
    expectations = marked(run)
    if expectations:
        line += (f" ({expectations[EXPECTED]} of them expected failures, "
                 f"{expectations[UNEXPECTED_PASS]} unexpected passes)")
    for backend in missing_required(run):
        line += f"; required backend {backend.name} unavailable"
    return line if run.complete else f"{line} (incomplete: the run was interrupted)"


def _availability(backend: BackendInfo) -> str:
    if backend.available:
        return "available"
    return "unavailable (required: failed)" if backend.required else "unavailable"


def _tables(run: Run, tablefmt: str) -> list[str]:
    sections = []
    covered = coverage(run)
    backend_rows = [[b.name, _availability(b), b.version or b.reason, coverage_text(*covered.get(b.name, (0, 0))),
                     b.origin] for b in run.backends]
    sections.append(tabulate(backend_rows, headers=["backend", "status", "version / reason", "coverage", "from"],
                             tablefmt=tablefmt))
    rows = summary(run)
    if rows:
        statuses = shown_statuses(totals(run))
        # the expectation columns show only where a manifest marked some result
        marks = [m for m in (EXPECTED, UNEXPECTED_PASS) if any(r[m] for r in rows)]
        table = [[r["backend"], r["op"], r["dtype"], checked(r["wrt"]), r["ran"], *(r[str(s)] for s in statuses),
                  *(r[m] for m in marks), r["as_specified"], _worst_ulp(r), _fmt(r["worst_headroom"])] for r in rows]
        counts = ["errors" if s == Status.ERROR else str(s) for s in statuses] + [m.replace("-", " ") for m in marks]
        headers = ["backend", "op", "dtype", "checks", "ran", *counts, "as specified", "worst ulp", "headroom"]
        sections.append(tabulate(table, headers=headers, tablefmt=tablefmt))
    specified = as_specified(run)
    if specified:
        listed = [[r.backend, r.case_id if r.wrt is None else f"{r.case_id} ({checked(r.wrt)})", r.dtype,
                   f"passed ({r.message})"] for r in specified]
        sections.append("Passed as specified (PyTorch's algorithm in the dtype; outside the exact value's tolerance):\n"
                        + tabulate(listed, headers=["backend", "case", "dtype", "status"], tablefmt=tablefmt))
    known = [r for r in run.results if r.expectation]
    if known:
        rows = [[r.backend, r.case_id if r.wrt is None else f"{r.case_id} ({checked(r.wrt)})", r.dtype,  # type: ignore[misc]
                 str(r.status), r.expectation, r.message] for r in known]
        sections.append(tabulate(rows, headers=["backend", "case", "dtype", "status", "expectation", "message"],
                                 tablefmt=tablefmt, maxcolwidths=[None] * 5 + [90]))
    bad = [r for r in run.results if failing(r)]
    if bad:
        failure_rows = [[r.backend, r.case_id if r.wrt is None else f"{r.case_id} ({checked(r.wrt)})", in_layout(r),
                         str(r.status), r.expected, r.got, _fmt(r.max_abs_error), _fmt(r.allowed),
                         "" if r.index is None else tuple(r.index), r.message] for r in bad]
        headers = ["backend", "case", "dtype", "status", "expected", "got", "error", "allowed", "where", "message"]
        sections.append(tabulate(failure_rows, headers=headers, tablefmt=tablefmt, maxcolwidths=[None] * 9 + [70]))
        selectors = {b.name: b.selector for b in run.backends}
        # a gradient case's results share one command
        commands = dict.fromkeys(rerun_command(r, selectors.get(r.backend, r.backend), run.command) for r in bad)
        sections.append("Rerun one:\n" + "\n".join(f"  {command}" for command in commands))
        stateful = [b.name for b in run.backends if b.stateful and any(r.backend == b.name for r in bad)]
        if stateful:
            sections.append(f"{', '.join(stateful)} declares itself stateful: a failure may depend on the calls "
                            f"that ran before it in the same worker, and may pass when rerun alone.")
        alone = sum(r.alone == NOT_REPRODUCED for r in bad)
        if alone:
            sections.append(f"{alone} of these failures did not reproduce when rerun alone in a fresh worker: each "
                            f"depended on the calls that ran before it in the same worker.")
    sections.append(_closing_line(run))
    return sections


def render_table(run: Run) -> str:
    return "\n\n".join(_tables(run, "simple")) + "\n"


def render_markdown(run: Run) -> str:
    sections = _tables(run, "github")
    if len(sections) > 2 and sections[-2].startswith("Rerun one:"):
        commands = sections[-2].splitlines()[1:]
        sections[-2] = "Rerun one:\n\n```sh\n" + "\n".join(c.strip() for c in commands) + "\n```"
    return "# BCE conformance report\n\n" + "\n\n".join(sections) + "\n"


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """This machine and the packages a result depends on."""
    return {
        "harness": _package_version("bce-conformance"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: _package_version(name) for name in ("numpy", "ml_dtypes", "mpmath", "torch")},
    }


def document(run: Run, merged: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON report of a run (docs/report-format.md; `saved.load` reads it back into the run): its records,
    and the totals and tables derived from them. The environment is the run's own where it was read back from a
    report (`Run.environment`), else this machine's; `merged` lists the shards' reports a merged run came from."""
    selectors = {b.name: b.selector for b in run.backends}
    data = {
        "format": FORMAT,
        "version": REPORT_VERSION,
        "complete": run.complete,
        "environment": {**(run.environment or environment()), "command": run.command, "seed": run.seed},
        "backends": [b.to_dict() for b in run.backends],
        "totals": {str(s): totals(run)[str(s)] for s in STATUSES},
        "expectations": expectation_counts(run),
        "summary": summary(run),
        "coverage": coverage_rows(run),
        "results": [{**r.to_dict(), "rerun": rerun_command(r, selectors.get(r.backend, r.backend), run.command)}
                    for r in run.results],
        **({"shard": run.shard.to_dict()} if run.shard is not None else {}),
        **({"merged": merged} if merged is not None else {}),
    }
    return json_safe(data)


def dumps(data: dict[str, Any]) -> str:
    """A report document as the file holds it."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def render_json(run: Run) -> str:
    return dumps(document(run))


def render_junit(run: Run) -> str:
    root = ET.Element("testsuites", name="bce-conformance")
    machine = environment()
    context = [("python", machine["python"]), ("platform", machine["platform"]),
               *((name, value) for name, value in machine["packages"].items()), ("command", run.command),
               *([("seed", str(run.seed))] if run.seed is not None else [])]
    by_backend: dict[str, list[Result]] = defaultdict(list)
    for result in run.results:
        by_backend[result.backend].append(result)
    for info in run.backends:
        results = by_backend.get(info.name, [])
        counts = Counter(r.status if failing(r) or r.status in NOT_RUN else r.expectation for r in results)
        absent = 0 if results else 1  # no results: one availability test, failed where --require named it
        missing = info.required and not info.available
        suite = ET.SubElement(root, "testsuite", name=info.name, tests=str(len(results) or 1),
                              failures=str(counts[Status.FAILED] + (absent if missing else 0)),
                              errors=str(sum(counts[s] for s in GATE_FAILURES if s != Status.FAILED)),
                              skipped=str(sum(counts[s] for s in (*NOT_RUN, EXPECTED)) + (0 if missing else absent)),
                              time=f"{sum(r.seconds for r in results):.6f}")
        properties = ET.SubElement(suite, "properties")
        for name, value in [("version", info.version or info.reason), ("device", info.device), *context]:
            ET.SubElement(properties, "property", name=name, value=value)
        if not results:
            case = ET.SubElement(suite, "testcase", classname=info.name, name="availability", time="0")
            if missing:
                ET.SubElement(case, "failure", message=f"required backend unavailable: {info.reason}", type="unavailable")
            else:
                ET.SubElement(case, "skipped", message=info.reason or "not run")
        for r in results:
            path, _, line = r.source.rpartition(":")
            name = f"{r.case_id}[{in_layout(r)}]" + ("" if r.wrt is None else f"[{checked(r.wrt)}]")
            case = ET.SubElement(suite, "testcase", classname=f"{r.backend}.{r.op}", name=name,
                                 file=path, line=line, time=f"{r.seconds:.6f}")
            if r.expectation == EXPECTED:  # as pytest writes an xfail
                ET.SubElement(case, "skipped", type="pytest.xfail", message=r.message)
            elif r.status == Status.FAILED:
                ET.SubElement(case, "failure", message=r.message, type="mismatch").text = rerun_command(
                    r, info.selector, run.command)
            elif r.status in GATE_FAILURES:
                ET.SubElement(case, "error", message=r.message, type=str(r.status)).text = rerun_command(
                    r, info.selector, run.command)
            elif r.status in NOT_RUN:
                ET.SubElement(case, "skipped", message=r.message)
            elif r.matched == AS_SPECIFIED:  # a pass, labelled: how far from the exact value it is
                ET.SubElement(ET.SubElement(case, "properties"), "property", name="matched", value=AS_SPECIFIED)
                ET.SubElement(case, "system-out").text = f"passed ({r.message})"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


RENDERERS: dict[str, Callable[[Run], str]] = {
    "table": render_table, "markdown": render_markdown, "json": render_json, "junit": render_junit,
}
