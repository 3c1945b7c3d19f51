"""PNG figures of an atlas (matplotlib, Agg): error against input per op x dtype, and the document's claim.

- `error-<op>-<dtype>.png`: the greatest error in ulps per input bin, one panel per target kind,
  backends overlaid, log scale.
- `sigmoid-equivalence-<backend>.png`: BCEWithLogits(x, y) and BCE(Sigmoid(x), y) against the
  exact loss over x, for float32 and float64, with the points where the sigmoid saturates marked.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from bce_reference import FORMATS

from ..errors import ConfigError
from ..registry import Entry
from . import claim
from .records import Atlas, Envelope
from .report import OP_TITLES

PANEL_ORDER = ("y = 0", "y = 1", "soft y", "soft y, pos_weight")
ERROR_FLOOR = 1e-3  # errors below (exact results included) are drawn here
RELATIVE_FLOOR = 1e-20
LOG_ODDS_LEFT = -50.0  # probabilities below 1e-50 are pooled at the left edge of the BCE figures
CLAIM_BIN = 10  # grid points per bin of the relative-error panels (0.5 of x)
DTYPE_ORDER = ("float16", "bfloat16", "float32", "float64")


def require() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'bce-conformance[plot]'") from None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_odds(p: np.ndarray) -> np.ndarray:
    """log10(p / (1 - p)): a logit axis that reaches float64's subnormals (1 - p is exact for p >= 1/2)."""
    return np.log10(p) - np.log10(1 - p)


def _pool_left(edges: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool the bins left of LOG_ODDS_LEFT (float64's tiny probabilities) into one bin drawn just left of it."""
    below = int(np.count_nonzero(edges[1:] <= LOG_ODDS_LEFT))
    if below == 0:
        return edges, values
    with np.errstate(invalid="ignore"):
        pooled = np.nanmax(values[:below]) if not np.isnan(values[:below]).all() else np.nan
    edges = np.concatenate([[LOG_ODDS_LEFT - 2, LOG_ODDS_LEFT], edges[below + 1:]])
    return edges, np.concatenate([[pooled], values[below:]])


def _probability_label(position: float, _: int) -> str:
    """The probability at a log-odds tick: 1e-30, 0.5, 1-1e-6, ..."""
    if abs(position) < 1:
        return f"{1 / (1 + 10 ** -position):.2g}"
    return f"1e{position:.0f}" if position < 0 else f"1-1e{-position:.0f}"


def _symlog_ticks(limit: float) -> list[float]:
    """0 and +-10^k up to `limit`, at most 6 a side, so the labels around 0 do not collide."""
    top = max(1, int(np.floor(np.log10(limit))))
    step = int(np.ceil(top / 6))
    powers = [10.0**k for k in range(0 if step == 1 else step, top + 1, step)]
    return [-p for p in reversed(powers)] + [0.0] + powers


def _panels(envelopes: list[Envelope]) -> list[str]:
    kinds = {e.panel for e in envelopes}
    return [k for k in PANEL_ORDER if k in kinds] + sorted(kinds - set(PANEL_ORDER))


def _error_figure(plt, op: str, dtype: str, envelopes: list[Envelope], backends: list[str], path: Path) -> None:
    panels = _panels(envelopes)
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(7.5 * columns, 4.6 * rows), squeeze=False)
    colours = {name: f"C{i}" for i, name in enumerate(backends)}
    widths = {name: 1.2 + 1.2 * (len(backends) - 1 - i) for i, name in enumerate(backends)}  # overlaps stay visible
    variable = "probability p" if op == "bce" else "logit x"
    fmt = FORMATS[dtype]
    for axis, panel in zip(axes.flat, panels):
        drawn = set()
        for envelope in (e for e in envelopes if e.panel == panel):
            values = np.maximum(envelope.max_ulp, ERROR_FLOOR)
            edges = envelope.edges
            if op == "bce":
                edges, values = _pool_left(_log_odds(np.clip(edges, fmt.min_subnormal, 1 - fmt.eps / 2)), values)
            label = envelope.backend if envelope.backend not in drawn else None
            drawn.add(envelope.backend)
            axis.stairs(values, edges, color=colours[envelope.backend], label=label, baseline=None,
                        linewidth=widths[envelope.backend])
        axis.axhline(0.5, color="0.4", linestyle=":", linewidth=1, label="0.5 ulp (correctly rounded)")
        axis.set_yscale("log")
        axis.set_ylim(bottom=ERROR_FLOOR / 2)
        if op == "bce":
            axis.xaxis.set_major_formatter(_probability_label)
            axis.set_xlabel(f"{variable} (log-odds scale; 0 and 1 at the ends, p < 1e-50 pooled left of 1e-50)")
        else:
            axis.set_xscale("symlog", linthresh=1.0)
            axis.set_xticks(_symlog_ticks(max(abs(e.edges[i]) for e in envelopes for i in (0, -1))))
            axis.set_xlabel(f"{variable} (symmetric log scale: linear in [-1, 1])")
        axis.set_ylabel(f"error, ulps of {dtype} (log scale)")
        axis.set_title(panel)
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(f"{OP_TITLES[op]}, {dtype}: error against the exact loss, greatest per input bin "
                    f"(errors below {ERROR_FLOOR:g} ulp drawn at {ERROR_FLOOR:g})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _relative(x: np.ndarray, got: np.ndarray | None, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Relative error, the greatest per bin of CLAIM_BIN points (so exact and 1-ulp results do not alternate)."""
    if got is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.maximum(np.abs(got.astype(np.float64) - exact) / exact, RELATIVE_FLOOR)
    starts = np.arange(0, x.size - 1, CLAIM_BIN)
    edges = np.append(x[starts], x[-1])
    return edges, np.maximum.reduceat(relative[:-1], starts)


def _mark_saturation(axis, curves: list[claim.Curves], label: bool) -> None:
    for c in curves:
        if c.saturation is None or not claim.SPAN[0] <= c.saturation <= claim.SPAN[1]:
            continue
        what = (f"Sigmoid(x) rounds to 1 from x = {c.saturation:.6g}" if c.target == 0
                else f"BCE(Sigmoid(x), 1) clamped at 100 below x = {c.saturation:.6g}")
        axis.axvline(c.saturation, color="C2" if c.target == 0 else "C4", linestyle=":", linewidth=1.6,
                     label=what if label else None)


def _claim_figure(plt, backend: str, curves: list[claim.Curves], path: Path) -> None:
    dtypes = [d for d in claim.DTYPES if any(c.dtype == d for c in curves)]
    figure, axes = plt.subplots(3, len(dtypes), figsize=(7.8 * len(dtypes), 13), squeeze=False)
    for column, dtype in enumerate(dtypes):
        found = {c.target: c for c in curves if c.dtype == dtype}
        values = axes[0, column]
        for target, c in sorted(found.items()):
            arm = "y = 0" if target == 0 else "y = 1"
            values.plot(c.x, c.exact, color="black", linewidth=3, alpha=0.25, label="exact loss" if target == 0 else None)
            if c.logits is not None:
                values.plot(c.x, c.logits.astype(np.float64), color="C0", linewidth=1.4,
                            label="BCEWithLogits(x, y)" if target == 0 else None)
            if c.composed is not None:
                values.plot(c.x, c.composed.astype(np.float64), color="C3", linewidth=1.4, linestyle="--",
                            label="BCE(Sigmoid(x), y)" if target == 0 else None)
            values.annotate(arm, (c.x[-1] if target == 0 else c.x[0], float(c.exact[-1] if target == 0 else c.exact[0])),
                            xytext=(-30 if target == 0 else 8, -14), textcoords="offset points")
        _mark_saturation(values, list(found.values()), label=True)
        values.set_ylim(-5, 135)
        values.set_ylabel("loss")
        values.set_title(f"{dtype}: loss for y = 0 (right arm) and y = 1 (left arm)")
        values.legend(loc="upper center", fontsize="small")
        for row, target in ((1, 0.0), (2, 1.0)):
            axis = axes[row, column]
            c = found.get(target)  # type: ignore[assignment]
            if c is None:
                axis.set_visible(False)
                continue
            for got, colour, style, name in ((c.logits, "C0", "-", f"BCEWithLogits(x, {target:g})"),
                                               (c.composed, "C3", "--", f"BCE(Sigmoid(x), {target:g})")):
                binned = _relative(c.x, got, c.exact)
                if binned is not None:
                    axis.stairs(binned[1], binned[0], color=colour, linestyle=style, linewidth=1.4, baseline=None,
                                label=name)
            axis.axhline(FORMATS[dtype].unit_roundoff, color="0.4", linewidth=0.8, linestyle="-.",
                         label=f"unit roundoff of {dtype}")
            _mark_saturation(axis, [c], label=False)
            axis.set_yscale("log")
            axis.set_ylim(RELATIVE_FLOOR / 3, 1e3)
            axis.set_ylabel(f"relative error (log scale; exact at {RELATIVE_FLOOR:g})")
            axis.set_title(f"{dtype}, y = {target:g}: relative error against the exact loss, greatest per 0.5 of x")
            axis.legend(loc="best", fontsize="small")
        for axis in axes[:, column]:
            axis.set_xlim(*claim.SPAN)
            axis.set_xlabel("logit x")
            axis.grid(True, alpha=0.3)
    figure.suptitle(f"{backend}: the document's claim BCEWithLogitsLoss(x, y) = BCELoss(Sigmoid(x), y), tested over x",
                    fontsize="x-large")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(atlas: Atlas, entries: list[Entry], directory: Path) -> list[Path]:
    """Every figure of the atlas, and the claim's figure per backend; returns the paths written."""
    require()
    plt = _pyplot()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot create the figure folder: {exc}") from None
    backends = [b.name for b in atlas.backends if b.available]
    groups: dict[tuple[str, str], list[Envelope]] = defaultdict(list)
    for envelope in atlas.envelopes:
        groups[(envelope.op, envelope.dtype)].append(envelope)
    written = []
    for (op, dtype), envelopes in sorted(groups.items(), key=lambda item: (item[0][0], DTYPE_ORDER.index(item[0][1]))):
        path = directory / f"error-{op}-{dtype}.png"
        _error_figure(plt, op, dtype, envelopes, backends, path)
        written.append(path)
    by_backend: dict[str, list[claim.Curves]] = defaultdict(list)
    for curves in claim.measure(entries):
        by_backend[curves.backend].append(curves)
    for backend, series in by_backend.items():
        path = directory / f"sigmoid-equivalence-{backend}.png"
        _claim_figure(plt, backend, series, path)
        written.append(path)
    return written
