"""The cross-framework matrix: per backend x area (data/matrix-areas.yaml), the pass rate and the classes of
deviation, one example each; rendered as Markdown and as one self-contained HTML page.

It reads JSON reports of `run` and JSON atlases of `accuracy`: each row of an atlas (backend x op x dtype x
region, judged against an accuracy budget) counts as one result of the accuracy area.
"""
from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import saved
from .accuracy.report import ATLAS_FORMAT, read_atlas
from .documents import read_validated, schema_validator
from .journal import parse_json
from .registry import Entry

AREAS_FILE = Path(str(resources.files("conformance"))) / "data" / "matrix-areas.yaml"
ACCURACY_POINTS = 64
"""Points per region and dtype of the small atlas `matrix` sweeps for its accuracy area (exhaustive regions left out)."""


@dataclass(frozen=True)
class Area:
    id: str
    title: str
    tags: frozenset[str] = frozenset()
    rejection: bool = False
    accuracy: bool = False

    def holds(self, result: dict[str, Any]) -> bool:
        if self.accuracy:
            return result.get("area") == "accuracy"
        if self.rejection:
            return result["expected"].startswith("rejection (")
        return bool(self.tags & set(result["tags"]))


@dataclass(frozen=True)
class Deviation:
    """A class of results that did not pass alike, with how many and one example."""

    label: str
    count: int
    example: str


@dataclass(frozen=True)
class Cell:
    passed: int = 0
    expected: int = 0  # failures a shipped manifest lists
    results: int = 0
    deviations: tuple[Deviation, ...] = ()

    @property
    def rate(self) -> float | None:
        return self.passed / self.results if self.results else None


@dataclass(frozen=True)
class Matrix:
    backends: list[tuple[str, str]]  # name, version or reason
    areas: list[Area]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


def load_areas(path: Path = AREAS_FILE) -> list[Area]:
    data, _ = read_validated(path, schema_validator("matrix-areas"))
    return [Area(a["id"], a["title"], frozenset(a.get("tags", ())), a.get("rejection", False), a.get("accuracy", False))
            for a in data["areas"]]


_BUDGET_STATUS = {"within": "passed", "known": "failed", "breach": "failed", "error": "error", "ungated": "skipped"}
"""What an atlas row's budget verdict (conformance/accuracy/budget.py) counts as in the matrix."""


def _accuracy_result(row: dict[str, Any]) -> dict[str, Any]:
    """An atlas row as a result of the accuracy area: passed within its budget, an expected failure beyond it as a
    known deviation, failed beyond it otherwise; skipped without a budget."""
    verdict = row["budget"] or {"status": "ungated", "breaches": [], "limits": {}}
    worst = None if row["max_ulp"] is None else float(row["max_ulp"])  # 'inf' and 'nan' are strings
    if verdict["status"] in ("within", "ungated"):
        message = f"{row['op']}: max {worst:.3g} ulp" if worst is not None else f"{row['op']}: not measured"
        message += ", within " + ", ".join(f"{k} <= {v:g}" for k, v in verdict["limits"].items()) \
            if verdict["status"] == "within" else " (no budget)"
    else:
        message = f"{row['op']}: " + "; ".join(verdict["breaches"])
    return {"backend": row["backend"], "case_id": row["region"], "dtype": row["dtype"], "wrt": None, "tags": [],
            "expected": "", "area": "accuracy", "status": _BUDGET_STATUS[verdict["status"]], "message": message,
            "expectation": "expected" if verdict["status"] == "known" else ""}


def _results(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The results of a JSON report, or of an accuracy atlas (one per row)."""
    if document.get("format") == ATLAS_FORMAT:
        return [_accuracy_result(row) for row in document["rows"]]
    return list(document["results"])


def load(path: Path) -> dict[str, Any]:
    """A JSON report or results file (`saved.document`), or a JSON accuracy atlas (`accuracy.report.read_atlas`),
    checked: one line naming the file where it is neither."""
    try:
        document = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return saved.document(path)  # which says what is wrong with it
    if not isinstance(document, dict) or document.get("format") != ATLAS_FORMAT:
        return saved.document(path)
    return read_atlas(document, path)


def accuracy_document(entries: list[Entry], progress: bool | None = None) -> dict[str, Any]:
    """A small accuracy atlas of the entries (ACCURACY_POINTS per region and dtype), judged by the shipped budget, as
    its JSON document."""
    from .accuracy.atlas import build as build_atlas
    from .accuracy.budget import default_budget_file, judge, load_budget
    from .accuracy.regions import load_regions, select
    from .accuracy.report import render_json

    atlas = build_atlas(select(load_regions(), None, None, False), entries, points=ACCURACY_POINTS, progress=progress)
    return dict(json.loads(render_json(atlas, judge(load_budget(default_budget_file()), atlas.rows))))


def _kind(number: str) -> str:
    return {"nan": "NaN", "inf": "inf", "-inf": "-inf"}.get(number.strip(), "finite")


_SHIPPED = re.compile(r"/\S*?/(conformance/data/\S+?\.yaml)")
"""An absolute path to a file the package ships (a manifest named in a message): the page shows it from the package."""


def _message(result: dict[str, Any]) -> str:
    """The result's message, paths to shipped files relative to the package's folder (no machine's path on the page)."""
    return _SHIPPED.sub(r"\1", result["message"])


def deviation_class(result: dict[str, Any]) -> str:
    """What a result that did not pass shares with its kind: its status and the kind of its discrepancy."""
    message = _message(result).split(" [expected:")[0]
    status = "expected failure" if result.get("expectation") == "expected" else result["status"]
    detail = message.split("elements differ; ", 1)[1] if "elements differ; " in message else ""
    mismatch = re.match(r"got (\S+?), expected (\S+?)(?: at|$|;)", detail)
    if detail.startswith("NaN everywhere"):
        kind = "NaN everywhere"
    elif mismatch:
        kind = f"got {_kind(mismatch.group(1))} where {_kind(mismatch.group(2))} is expected"
    elif detail:
        kind = "values beyond the tolerance"
    else:
        kind = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", re.split(r"; |: (?=[A-Z]\w+Error)", message)[0])[:120]
    return f"{status}: {kind}"


def _cell(results: list[dict[str, Any]]) -> Cell:
    off = [r for r in results if r["status"] != "passed"]
    classes = Counter(deviation_class(r) for r in off)
    first: dict[str, dict[str, Any]] = {}
    for r in off:
        first.setdefault(deviation_class(r), r)
    deviations = tuple(Deviation(label, count, f"{first[label]['case_id']} [{first[label]['dtype']}]"
                                 + (f" d/d {first[label]['wrt']}" if first[label]["wrt"] else "")
                                 + f": {_message(first[label])[:200]}")
                       for label, count in classes.most_common())
    return Cell(passed=sum(r["status"] == "passed" for r in results),
                expected=sum(r.get("expectation") == "expected" for r in results),
                results=len(results), deviations=deviations)


def build(documents: list[dict[str, Any]], areas: list[Area]) -> Matrix:
    """The matrix of JSON report documents (a backend's results may come from any of them)."""
    backends: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    for document in documents:
        for b in document["backends"]:
            if b["available"] or b["name"] not in backends:
                backends[b["name"]] = b["version"] if b["available"] else f"unavailable: {b['reason']}"
        results += _results(document)
    matrix = Matrix(sorted(backends.items()), areas)
    for name in backends:
        mine = [r for r in results if r["backend"] == name]
        for area in areas:
            matrix.cells[(name, area.id)] = _cell([r for r in mine if area.holds(r)])
    return matrix


def _rate(cell: Cell) -> str:
    return "" if cell.rate is None else f"{100 * cell.rate:.0f}% ({cell.passed}/{cell.results})"


def render_markdown(matrix: Matrix) -> str:
    lines = ["# Cross-framework BCE conformance matrix", "",
             ("Per backend and area: results passed out of results specified (python -m conformance matrix). "
              "The classes of deviation follow the table, one example each."), "",
             "| backend | version | " + " | ".join(a.title for a in matrix.areas) + " |",
             "|---|---|" + "---|" * len(matrix.areas)]
    for name, version in matrix.backends:
        cells = [_rate(matrix.cells[(name, a.id)]) for a in matrix.areas]
        lines.append(f"| {name} | {version} | " + " | ".join(cells) + " |")
    for name, _ in matrix.backends:
        listed = [(a, d) for a in matrix.areas for d in matrix.cells[(name, a.id)].deviations]
        if not listed:
            continue
        lines += ["", f"## {name}", "", "| area | results | class | example |", "|---|---|---|---|"]
        lines += [f"| {a.title} | {d.count} | {_md(d.label)} | {_md(d.example)} |" for a, d in listed]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
th,td{border:1px solid #ccc;padding:.4em .6em;text-align:center;vertical-align:top}
th{background:#f3f3f3}
td.name{text-align:left;font-weight:bold}
td.version{text-align:left;font-size:.8em;color:#555;max-width:18em}
.bar{height:.5em;background:#e66;margin-top:.3em}
.bar span{display:block;height:100%;background:#3a3}
details{text-align:left;font-size:.8em;margin-top:.3em}
details li{margin:.2em 0}
td.empty{background:#fafafa;color:#aaa}
"""


def _html_cell(cell: Cell) -> str:
    if cell.rate is None:
        return '<td class="empty">no case</td>'
    hue = int(120 * cell.rate)
    bar = f'<div class="bar"><span style="width:{100 * cell.rate:.1f}%"></span></div>'
    classes = "".join(f"<li><b>{d.count}</b> {html.escape(d.label)}<br><i>{html.escape(d.example)}</i></li>"
                      for d in cell.deviations)
    details = (f"<details><summary>{len(cell.deviations)} class{'' if len(cell.deviations) == 1 else 'es'}</summary><ul>{classes}</ul></details>"
               if cell.deviations else "")
    return (f'<td style="background:hsl({hue},60%,92%)">{cell.passed}/{cell.results}'
            f"<br>{100 * cell.rate:.0f}%{bar}{details}</td>")


def render_html(matrix: Matrix) -> str:
    head = "".join(f"<th>{html.escape(a.title)}</th>" for a in matrix.areas)
    rows = "".join(
        f'<tr><td class="name">{html.escape(name)}</td><td class="version">{html.escape(version)}</td>'
        + "".join(_html_cell(matrix.cells[(name, a.id)]) for a in matrix.areas) + "</tr>"
        for name, version in matrix.backends)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>BCE conformance matrix</title>"
            f"<style>{_STYLE}</style></head><body><h1>Cross-framework BCE conformance matrix</h1>"
            "<p>Per backend and area: results passed out of results specified. "
            "Open a cell's classes for the deviations, one example each.</p>"
            f'<table id="matrix"><thead><tr><th>backend</th><th>version</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></body></html>\n")
