"""The built-in framework backends without their frameworks, their shipped manifests, and the matrix page
(rendered, and looked at in a real headless Chromium where one is installed)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance import expectations, matrix, named, probing, registry, rejections
from conformance.backends import keras_backend, tensorflow_backend, tinygrad_backend
from conformance.cli import main

CASES = Path(__file__).resolve().parent.parent / "cases"
FRAMEWORKS = {"jax": ("jax", "optax"), "tinygrad": ("tinygrad",), "tensorflow": ("tensorflow",),
              "keras": ("keras", "tensorflow")}


@pytest.mark.parametrize("name, modules", FRAMEWORKS.items())
def test_a_framework_backend_without_its_library_says_which(name, modules):
    missing = next((m for m in modules if importlib.util.find_spec(m) is None), None)
    if missing is None:
        pytest.skip(f"{', '.join(modules)} installed here")
    (info,) = probing.inspect(registry.select([name]))
    assert not info.available and info.reason == f"{missing} is not installed"


def test_tinygrad_without_clang_is_unavailable_for_that_reason(monkeypatch):
    monkeypatch.setattr(tinygrad_backend.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(tinygrad_backend.shutil, "which", lambda name: None)
    availability = tinygrad_backend.TinygradBackend().availability()
    assert not availability.available and "clang" in availability.reason


TENSORFLOW_ERRORS = [  # (type name, first line, rule), as TensorFlow 2.21 raised them on the shipped rejection cases
    ("ValueError", "`logits` and `labels` must have the same shape, received ((1,) vs ()).", "shape_mismatch"),
    ("InvalidArgumentError", "cannot compute Mul as input #1(zero-based) was expected to be a half tensor but is a "
                             "int64 tensor [Op:Mul] name: ", "dtype"),
    ("InvalidArgumentError", "Value for attr 'T' of bool is not in the list of allowed values: float, double, int32",
     "dtype"),
    ("InvalidArgumentError", "{{function_node __wrapped__Mul_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
                             "Incompatible shapes: [3] vs. [2] [Op:Mul] name: ", "weight_shape"),
    ("InvalidArgumentError", "{{function_node __wrapped__Mean_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
                             "Invalid reduction dimension (-1 for input with 0 dimension(s) [Op:Mean] name: ", None),
    ("RuntimeError", "something else entirely", None),
]
KERAS_ERRORS = [  # the same, from Keras 3.15 on TensorFlow 2.21
    ("ValueError", "Arguments `target` and `output` must have the same rank (ndim). Received: target.shape=(2, 3), "
                   "output.shape=(3,)", "shape_mismatch"),
    ("ValueError", "Arguments `target` and `output` must have the same shape. Received: target.shape=(2,), "
                   "output.shape=(3,)", "shape_mismatch"),
    ("TypeError", "Cannot convert 0.9999999 to EagerTensor of dtype int64", "dtype"),
    *TENSORFLOW_ERRORS,
]


@pytest.mark.parametrize("backend, type_name, text, rule", [
    *[(tensorflow_backend.TensorflowBackend(), *error) for error in TENSORFLOW_ERRORS],
    *[(keras_backend.KerasBackend(), *error) for error in KERAS_ERRORS]])
def test_tensorflow_and_keras_rejections_are_for_the_rule_their_message_names(backend, type_name, text, rule):
    """Without TensorFlow: the hook reads the stand-in a worker sends back (type name and text); an error unrelated to
    any rule (Keras's 0-d mean) establishes none, so it can never pass a rejection case."""
    error = type(type_name, (Exception,), {})(text)
    assert rejections.identify(backend, error).rule == rule


@pytest.mark.parametrize("name", sorted(named.shipped_manifests()))
def test_the_shipped_manifests_load_and_give_reasons(name):
    manifest = expectations.load(named.manifest(name))
    assert manifest.backend == name and manifest.entries
    assert all(len(entry.reason) > 40 for entry in manifest.entries)


def test_every_framework_has_a_shipped_manifest():
    assert set(FRAMEWORKS) <= set(named.shipped_manifests())


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix")
    argv = ["matrix", "--backend", "numpy", "--backend", "tests.mutants:NoClamp", "--backend",
            "tests.test_capabilities:NO_POS_WEIGHT", "--no-isolation", "--output-dir", str(out),
            "--cases", str(CASES / "bce_special_points.yaml"), "--cases", str(CASES / "document.yaml"),
            "--report", str(out / "report.json")]
    assert main(argv) == 0
    return out


def test_the_matrix_has_every_backend_and_area(page):
    text = (page / "matrix.md").read_text()
    areas = matrix.load_areas()
    header = next(line for line in text.splitlines() if line.startswith("| backend |"))
    assert all(area.title in header for area in areas)
    assert "| numpy |" in text and "100% (" in text
    assert "failed: got inf where finite is expected" in text  # NoClamp's class, with an example
    assert "bce-clamp-p0-y1 [" in text


def test_the_matrix_renders_again_from_reports(page, tmp_path):
    sources = [str(page / "report.json"), str(page / "report.accuracy.json")]  # the run, and its accuracy atlas
    assert main(["matrix", "--from", *sources, "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "matrix.md").read_text() == (page / "matrix.md").read_text()


def test_the_page_is_self_contained(page):
    html = (page / "matrix.html").read_text()
    assert "<table" in html and "src=" not in html and "<link" not in html and "http" not in html


def test_the_page_in_a_headless_browser(page, tmp_path):
    """A screenshot by real headless Chromium: the table is drawn (green and red cells), not a blank page."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium)")
    image = pytest.importorskip("matplotlib.image")
    shot = tmp_path / "matrix.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1400,700", f"--screenshot={shot}", (page / "matrix.html").as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (700, 1400)
    green = (pixels[..., 1] > pixels[..., 0] + 0.1).sum()
    red = (pixels[..., 0] > pixels[..., 1] + 0.1).sum()
    assert green > 1000 and red > 100 and np.ptp(pixels) > 0.5


def test_a_report_lists_the_coverage_of_each(page):
    document = json.loads((page / "report.json").read_text())
    coverage = {c["backend"]: c for c in document["coverage"]}
    assert coverage["numpy"]["judged"] == coverage["numpy"]["specified"]
    assert coverage["no-pos-weight"]["judged"] < coverage["no-pos-weight"]["specified"]


def test_the_page_shows_shipped_files_from_the_package_not_this_machine():
    result = {"status": "failed", "expectation": "expected", "case_id": "c", "dtype": "float32", "wrt": None,
              "message": "expected failed (/home/me/src/conformance/data/expectations/jax.yaml:22: optax has none)"}
    assert "/home/me" not in matrix.deviation_class(result)
    (deviation,) = matrix._cell([result]).deviations
    assert "(conformance/data/expectations/jax.yaml:22: optax" in deviation.example
