"""The structure drawing of the package (grimp's import graph, function-level imports included): no import cycle,
and the command line (conformance.cli) is a leaf that nothing else in the package imports."""
from __future__ import annotations

import grimp
import pytest

PACKAGES = ("conformance", "bce_reference")


@pytest.fixture
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Each import of a module whose imported module leads back to it."""
    return [(importer, imported) for importer in sorted(graph.modules)
            for imported in sorted(graph.find_modules_directly_imported_by(importer))
            if graph.chain_exists(importer=imported, imported=importer)]


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_the_check_finds_a_cycle(graph):
    """As the one the command line had with the accuracy command, which took its exit codes from cli."""
    graph.add_import(importer="conformance.gates", imported="conformance.cli.output")
    assert ("conformance.gates", "conformance.cli.output") in cycles(graph)


def test_nothing_outside_the_command_line_imports_it(graph):
    inside = {"conformance.cli", *graph.find_descendants("conformance.cli")}
    importers = {importer for module in inside for importer in graph.find_modules_that_directly_import(module)}
    assert "conformance.__main__" in importers  # `python -m conformance` is the command line's entry
    assert importers - inside == {"conformance.__main__"}


def test_the_pytest_plugin_and_the_command_line_share_their_options(graph):
    assert graph.direct_import_exists(importer="conformance.pytest_plugin", imported="conformance.options")
    assert graph.chain_exists(importer="conformance.cli.run", imported="conformance.options")
    assert graph.direct_import_exists(importer="conformance.cli.run", imported="conformance.gates")
    assert graph.direct_import_exists(importer="conformance.pytest_plugin", imported="conformance.gates")
