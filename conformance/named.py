"""Files the package ships, addressed by name rather than by a path into the source tree.

`accuracy --budget default` and `run --expectations jax` work from an installed package; an argument
that names an existing file is that file.
"""
from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

DATA = Path(str(resources.files("conformance"))) / "data"
MANIFESTS = DATA / "expectations"


def shipped_budgets() -> dict[str, Path]:
    return {"default": DATA / "accuracy-budget.yaml"}


def shipped_manifests() -> dict[str, Path]:
    """The expectations manifests of the built-in backends, by backend name."""
    return {path.stem: path for path in sorted(MANIFESTS.glob("*.yaml"))}


def _resolve(text: str, names: dict[str, Path], kind: str) -> Path:
    path = Path(text)
    if path.exists() or (text not in names and (path.suffix or len(path.parts) > 1)):
        return path  # a file, or a path the loader will say is missing
    if text in names:
        return names[text]
    raise argparse.ArgumentTypeError(f"{text!r} is neither a file nor a shipped {kind} "
                                     f"(shipped: {', '.join(names) or 'none'})")


def budget(text: str) -> Path:
    """An argparse type: a budget file, or the name of a shipped one."""
    return _resolve(text, shipped_budgets(), "budget")


def manifest(text: str) -> Path:
    """An argparse type: an expectations manifest, or the name of a built-in backend's shipped one."""
    return _resolve(text, shipped_manifests(), "expectations manifest")
