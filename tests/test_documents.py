"""The document layer (conformance/documents.py): every kind of YAML file the suite reads goes through the same
safe YAML and JSON Schema checks, and a problem is one ConfigError naming the file and line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance import expectations, matrix, rejections, relations
from conformance.accuracy.budget import load_budget
from conformance.accuracy.regions import load_regions
from conformance.documents import MAX_SCALAR_CHARS, read_validated, schema_validator
from conformance.errors import ConfigError
from conformance.loader import load_cases

ROOT = Path(__file__).resolve().parent.parent

READERS = {  # each kind of document, read as the suite reads it (uncached: the cached readers' wrapped function)
    "cases": lambda path: load_cases([path]),
    "expectations": expectations.load,
    "relations": relations.load_relations.__wrapped__,
    "rejection rules": rejections.rules.__wrapped__,
    "matrix areas": matrix.load_areas,
    "accuracy regions": load_regions,
    "accuracy budget": load_budget,
}


PROBLEMS = {  # a document, and the one line (after its file name) that refuses it
    "duplicate key": ("# a comment\ntopic: one\ntopic: two\n", ":3: invalid YAML: duplicate key 'topic'"),
    "schema": ("# a comment\n\n[1, 2]\n", ":3: \\(top level\\): \\[1, 2\\] is not of type 'object'"),
}


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("kind", READERS)
def test_every_kind_of_document_is_refused_in_one_line_naming_file_and_line(tmp_path, kind, problem):
    path = tmp_path / "document.yaml"
    text, line = PROBLEMS[problem]
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{path}{line}$"):
        READERS[kind](path)


def test_a_region_bound_of_digits_is_refused_in_time_linear_in_its_length():
    """A decimal bound is matched by a pattern without nested choices: a long run of digits that fails at its
    end costs its length, not its length squared (the old pattern took minutes on this, in a subprocess that
    the time limit stops)."""
    code = ("from conformance.documents import schema_validator; hostile = '1' * 200_000 + 'x'; "
            "bound = {'topic': 't', 'regions': [{'id': 'r', 'op': 'bce', 'input': [hostile, 1], 'target': 0, 'seed': 1}]}; "
            "errors = schema_validator('accuracy-regions').iter_errors(bound); "
            "assert ['regions', 0, 'input', 0] in [list(e.absolute_path) for e in errors]")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_region_file_with_a_hostile_bound_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "regions.yaml"
    path.write_text("topic: t\nregions:\n  - {id: r, op: bce, input: ['" + "1" * (MAX_SCALAR_CHARS - 10)
                    + "x', 1], target: 0, seed: 1}\n")
    with pytest.raises(ConfigError, match=f"^{path}:3: regions/0/input/0: "):
        load_regions(path)
    assert read_validated(ROOT / "conformance/data/accuracy-regions.yaml", schema_validator("accuracy-regions"))
