"""Render an atlas: a terminal table (tabulate), Markdown, and JSON (docs/accuracy.md#json)."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from jsonschema.exceptions import best_match
from tabulate import tabulate

from ..documents import schema_validator
from ..errors import ConfigError
from ..report import environment
from ..results import json_safe
from .budget import Judgement, Verdict
from .records import REFERENCE, Atlas, Point, Row

FORMATS = ("table", "markdown", "json")
OP_TITLES = {"bce": "BCELoss", "bce_with_logits": "BCEWithLogitsLoss"}
ATLAS_FORMAT = "bce-accuracy-atlas"
ATLAS_VERSION = 1


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return "inf"
    return "0" if value == 0 else f"{value:.3g}"


def _inputs(point: Point | None, row: Row, soft: bool) -> str:
    if point is None:
        return ""
    name = "p" if row.op == "bce" else "x"
    text = f"{name}={point.input:.9g}"
    if soft:
        text += f", y={point.target:.6g}"
    if point.pos_weight is not None:
        text += f", pw={point.pos_weight:.4g}"
    return text


def _got_exact(point: Point) -> str:
    """Both values with enough digits to tell them apart."""
    rel = point.rel_error
    digits = 6 if not math.isfinite(rel) or rel == 0 else min(17, max(6, 2 - math.floor(math.log10(rel))))
    return f"{point.got:.{digits}g} / {point.exact:.{digits}g}"


def _verdict_cell(verdict: Verdict | None) -> str:
    if verdict is None:
        return ""
    if verdict.status in ("breach", "error"):
        return f"{'OVER' if verdict.status == 'breach' else 'ERROR'}: {'; '.join(verdict.breaches)}"
    if verdict.status == "known":
        issue = verdict.deviation.issue if verdict.deviation else ""
        return f"known: {issue}" if issue else "known deviation"
    if verdict.status == "ungated":
        return "no budget"
    return "ok: " + ", ".join(f"{name.replace('_ulp', '').replace('_', ' ')} <= {limit:g}"
                              for name, limit in verdict.limits.items())


def _soft_regions(atlas: Atlas) -> set[tuple[str, str]]:
    return {(s.region, s.dtype) for s in atlas.swept if isinstance(s.target, tuple)}


def _ordered(atlas: Atlas) -> list[Row]:
    region_order = {region: i for i, region in enumerate(dict.fromkeys(s.region for s in atlas.swept))}
    dtype_order = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}
    backend_order = {b.name: i for i, b in enumerate(atlas.backends)}
    return sorted(atlas.rows, key=lambda r: (r.op != "bce_with_logits", dtype_order.get(r.dtype, 9),
                                             region_order[r.region], backend_order.get(r.backend, 99)))


def atlas_tables(atlas: Atlas, judgement: Judgement | None) -> list[tuple[str, str, list[list[str]]]]:
    """One table per op x dtype: (op, dtype, rows), rows ordered by region, then backend."""
    verdicts = {id(v.row): v for v in judgement.verdicts} if judgement else {}
    soft = _soft_regions(atlas)
    tables: dict[tuple[str, str], list[list[str]]] = {}
    for row in _ordered(atlas):
        worst = row.worst
        cells = [row.region, row.backend, f"{row.points:,}", row.bound,
                 _number(row.median_ulp), _number(row.p99_ulp), _number(row.max_ulp),
                 _inputs(worst, row, (row.region, row.dtype) in soft),
                 _got_exact(worst) if worst else row.error,
                 f"{row.tiny_points:,}: {_number(row.tiny_max_rel)}" if row.tiny_points else ""]
        if judgement:
            cells.append(_verdict_cell(verdicts.get(id(row))))
        tables.setdefault((row.op, row.dtype), []).append(cells)
    return [(op, dtype, rows) for (op, dtype), rows in tables.items()]


ATLAS_HEADERS = ["region", "backend", "points", "max is", "median ulp", "p99 ulp", "max ulp", "worst input",
                 "got / exact", "tiny: n, max rel"]
LEGEND = ("Error in ulps of the output dtype against the exact loss. 'max is' upper: every input of the region was "
          "swept, so no larger error exists; lower: sampled, larger errors may exist. 'tiny': points whose exact loss "
          "is zero or subnormal, where an ulp is an absolute error; their greatest relative error is shown as such.")


def agreement_rows(atlas: Atlas) -> tuple[list[str], list[list[str]]]:
    """One row per op x dtype x result, one column per result: the greatest distance in ulps (share beyond 1 ulp)."""
    names = [REFERENCE] + [b.name for b in atlas.backends if b.available]
    cells: dict[tuple[str, str], dict[tuple[str, str], str]] = defaultdict(dict)
    for a in atlas.agreement:
        share = a.beyond_one_ulp / a.points if a.points else 0.0
        text = f"{_number(a.max_ulp)} ({share:.1%})"
        cells[(a.op, a.dtype)][(a.a, a.b)] = cells[(a.op, a.dtype)][(a.b, a.a)] = text
    rows = []
    for (op, dtype), pairs in cells.items():
        present = [n for n in names if any(n in pair for pair in pairs)]
        for name in present:
            rows.append([op, dtype, name] + [("-" if other == name else pairs.get((name, other), ""))
                                             for other in names])
    return ["op", "dtype", "result"] + [f"vs {n}" for n in names], rows


def _timing(atlas: Atlas) -> str:
    reference = sum(s.reference_seconds for s in atlas.swept)
    per_backend: dict[str, float] = defaultdict(float)
    for row in atlas.rows:
        per_backend[row.backend] += row.seconds
    parts = [f"reference {reference:.1f} s"] + [f"{name} {seconds:.1f} s" for name, seconds in per_backend.items()]
    points = sum(s.points for s in atlas.swept)
    return f"Time: {atlas.wall_seconds:.1f} s wall for {points:,} points per backend; inside: " + ", ".join(parts)


def _budget_sections(judgement: Judgement, tablefmt: str) -> list[str]:
    sections = []
    failed = [v for v in judgement.verdicts if v.failed]
    if failed:
        rows = [[v.row.backend, v.row.op, v.row.dtype, v.row.region, "; ".join(v.breaches),
                 v.rule.source if v.rule else ""] for v in failed]
        sections.append("Over budget:\n" + tabulate(rows, headers=["backend", "op", "dtype", "region", "what", "budget"],
                                                    tablefmt=tablefmt, maxcolwidths=[None] * 4 + [60, None]))
    known: dict[int, list[Verdict]] = defaultdict(list)
    for v in judgement.verdicts:
        if v.status == "known" and v.deviation is not None:
            known[id(v.deviation)].append(v)
    for verdicts in known.values():
        deviation = verdicts[0].deviation
        worst = max(verdicts, key=lambda v: v.row.max_ulp or 0.0).row
        sections.append(f"Known deviation{' ' + deviation.issue if deviation.issue else ''} ({deviation.source}): "  # type: ignore[union-attr]
                        f"{len(verdicts)} rows over budget, worst {_number(worst.max_ulp)} ulp "
                        f"({worst.backend} {worst.op} {worst.dtype} {worst.region}). {deviation.reason}")  # type: ignore[union-attr]
    for deviation in judgement.stale:
        sections.append(f"Known deviation no longer observed ({deviation.source}): every row it matches is within "
                        f"budget; remove it once that holds on every platform.")
    return sections


def _closing(atlas: Atlas, judgement: Judgement | None) -> str:
    errors = sum(1 for r in atlas.rows if r.error)
    line = f"{len(atlas.rows)} rows, {errors} not measured"
    if judgement is None:
        return line
    counts: defaultdict[str, int] = defaultdict(int)
    for v in judgement.verdicts:
        counts[v.status] += 1
    return (f"{line}; budget: {counts['within']} within, {counts['known']} known deviations, "
            f"{counts['breach']} over budget, {counts['ungated']} ungated -> {'passed' if judgement.passed else 'FAILED'}")


def _sections(atlas: Atlas, judgement: Judgement | None, tablefmt: str) -> list[str]:
    backends = [[b.name, "available" if b.available else "unavailable", b.version or b.reason] for b in atlas.backends]
    sections = [tabulate(backends, headers=["backend", "status", "version / reason"], tablefmt=tablefmt)]
    if atlas.rows:
        sections.append(LEGEND)
        headers = ATLAS_HEADERS + (["budget"] if judgement else [])
        for op, dtype, rows in atlas_tables(atlas, judgement):
            title = f"{OP_TITLES[op]}, {dtype}"
            table = tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)
            sections.append(f"## {title}\n\n{table}" if tablefmt == "github" else f"{title}\n{table}")
        headers, rows = agreement_rows(atlas)
        sections.append("Agreement: greatest distance in ulps over every swept point (share of points more than "
                        "1 ulp apart)\n" + tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True))
    failed = [[r.backend, r.op, r.dtype, r.region, f"{r.points:,}", r.error] for r in _ordered(atlas) if r.error]
    if failed:
        sections.append("Not measured (the statistics cover the points before):\n" + tabulate(
            failed, headers=["backend", "op", "dtype", "region", "points", "why"], tablefmt=tablefmt,
            disable_numparse=True, maxcolwidths=[None] * 5 + [80]))
    if atlas.skipped:
        sections.append("Skipped (the backend does not compute in the dtype): "
                        + ", ".join(f"{backend} {dtype}" for backend, dtype in atlas.skipped))
    if judgement:
        sections += _budget_sections(judgement, tablefmt)
    if atlas.interrupted:
        sections.append("INTERRUPTED: the sweep was stopped; rows and regions after the last one shown were not swept.")
    sections.append(_timing(atlas))
    sections.append(_closing(atlas, judgement))
    return sections


def render_table(atlas: Atlas, judgement: Judgement | None = None) -> str:
    return "\n\n".join(_sections(atlas, judgement, "simple")) + "\n"


def render_markdown(atlas: Atlas, judgement: Judgement | None = None) -> str:
    return "# BCE accuracy atlas\n\n" + "\n\n".join(_sections(atlas, judgement, "github")) + "\n"


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "status": verdict.status, "limits": verdict.limits, "breaches": list(verdict.breaches),
        "rule": verdict.rule.source if verdict.rule else None,
        "known_deviation": ({"source": verdict.deviation.source, "issue": verdict.deviation.issue,
                             "reason": verdict.deviation.reason} if verdict.deviation else None),
    }


def render_json(atlas: Atlas, judgement: Judgement | None = None) -> str:
    verdicts = {id(v.row): v for v in judgement.verdicts} if judgement else {}
    rows = []
    for row in _ordered(atlas):
        data = asdict(row)
        data["budget"] = _verdict_json(verdicts[id(row)]) if id(row) in verdicts else None
        rows.append(data)
    document = {
        "format": ATLAS_FORMAT,
        "version": ATLAS_VERSION,
        "environment": environment(),
        "backends": [asdict(b) for b in atlas.backends],
        "regions": [asdict(s) for s in atlas.swept],
        "rows": rows,
        "agreement": [asdict(a) for a in atlas.agreement],
        "budget": None if judgement is None else {
            "file": judgement.source,
            "passed": judgement.passed,
            "stale_known_deviations": [d.source for d in judgement.stale],
        },
        "skipped": [{"backend": backend, "dtype": dtype} for backend, dtype in atlas.skipped],
        "interrupted": atlas.interrupted,
        "wall_seconds": atlas.wall_seconds,
    }
    return json.dumps(json_safe(document), indent=2, allow_nan=False) + "\n"


def read_atlas(document: Any, path: Path) -> dict[str, Any]:
    """`document`, a JSON accuracy atlas read from `path` (`render_json` writes it), checked against
    schemas/accuracy-atlas.schema.json and this harness's version: ConfigError naming the file where it is not one."""
    error = best_match(schema_validator("accuracy-atlas").iter_errors(document))
    if error is not None:
        where = "".join(f"[{p!r}]" for p in error.absolute_path)[:200] or "the top level"
        raise ConfigError(f"{path}: not an accuracy atlas ({error.message[:200]} at {where})")
    if document["version"] != ATLAS_VERSION:
        raise ConfigError(f"{path}: an accuracy atlas of version {document['version']!r}; this harness reads "
                          f"{ATLAS_VERSION}")
    return dict(document)


RENDERERS: dict[str, Callable[[Atlas, Judgement | None], str]] = {
    "table": render_table, "markdown": render_markdown, "json": render_json,
}
