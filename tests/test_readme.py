"""The README and docs/ work as written: the adapters pass the cases they support, the commands they show
parse, the tox environments they name exist, and the quick start's output is what the report prints."""
from __future__ import annotations

import configparser
import functools
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

import conformance
from conformance import pytest_plugin
from conformance.cli import main
from conformance.cli.main import parser
from conformance.loader import load_cases
from conformance.results import Status

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
FAILING = (Status.FAILED, Status.ERROR, Status.CRASHED, Status.TIMEOUT)


def _readme_adapter() -> str:
    return re.search(r"<!-- adapter-example -->\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)


@functools.cache
def _adapters_run():
    """The README's adapter and examples/numpy-adapter's, as written, run together (one reference pass), once per
    process however pytest-xdist orders the tests."""
    readme: dict = {}
    exec(compile(_readme_adapter(), str(README), "exec"), readme)
    spec = importlib.util.spec_from_file_location("my_adapter", ROOT / "examples" / "numpy-adapter" / "my_adapter.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return conformance.run([readme["BACKEND"], example.BACKEND], cases=load_cases(), isolation=False, cache=True)


@pytest.fixture
def adapters_run():
    pytest.importorskip("torch")
    return _adapters_run()


def test_the_readme_adapter_is_short():
    assert len(_readme_adapter().splitlines()) <= 35  # the complete adapter lives in examples/


def _results(run, name):
    results = [r for r in run.results if r.backend == name]
    bad = [(r.case_id, r.dtype, r.message) for r in results if r.status in FAILING]
    assert results and not bad, bad
    return results


def test_readme_adapter_passes_every_loss_case(adapters_run):
    by_kind = {(r.wrt is not None, r.status) for r in _results(adapters_run, "my-torch")}
    assert (False, Status.PASSED) in by_kind and (False, Status.SKIPPED) in by_kind  # bfloat16 is skipped
    assert {status for graded, status in by_kind if graded} == {Status.UNSUPPORTED, Status.SKIPPED}


def test_example_adapter_passes_every_case_gradients_included(adapters_run):
    results = _results(adapters_run, "mylib")
    statuses = {r.status for r in results}
    assert Status.PASSED in statuses and Status.SKIPPED in statuses  # float16 and bfloat16 are skipped
    # it has the first-order gradient capability, for both losses (not the optional second-order and forward-mode ones)
    unsupported = {r.message.split(" capability")[0].rsplit(" ", 1)[-1] for r in results if r.status == Status.UNSUPPORTED}
    assert unsupported <= {"second-order", "forward-mode"}
    gradients = {(r.op, r.wrt) for r in results if r.wrt and r.status == Status.PASSED}
    assert {("bce", "input"), ("bce", "target"), ("bce_with_logits", "input"), ("bce_with_logits", "target")} <= gradients


def _shell_blocks(path: Path) -> list[str]:
    """The commands of the document's ```sh blocks, continuation lines joined and comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*", "", line).strip()
            if line:
                commands.append(line)
    return commands


def test_the_readme_opens_with_exactly_two_commands():
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = [re.sub(r"\s+#.*", "", line) for line in first.splitlines()]
    assert commands == ["python3 -m pip install tox && python3 -m tox -e report",
                        "python3 -m pip install tox && python3 -m tox -e tests"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec python3 -m tox -e tests\n" in ci  # CI runs the README's test command
    assert len(README.read_bytes()) <= 12_500


@functools.cache
def _plugin_flags() -> frozenset[str]:
    """The options the pytest plugin adds, as its `pytest_addoption` adds them."""
    added: set[str] = set()

    class Parser:  # the part of pytest's parser and option group the plugin uses
        def getgroup(self, *args: object) -> Parser:
            return self

        def addoption(self, *flags: str, **settings: object) -> None:
            added.update(flags)

    pytest_plugin.pytest_addoption(Parser())  # type: ignore[arg-type]
    return frozenset(added)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_documented_commands_parse(document):
    """Each `python -m conformance ...` command parses; each benchmark shown exists with the options shown; a pytest
    command uses the plugin's options only; each tox environment named exists."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    environments = {s.removeprefix("testenv:") for s in tox.sections() if s.startswith("testenv:")}
    commands = _shell_blocks(document)
    parsed = 0
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            while words and re.fullmatch(r"\w+=\S*", words[0]):  # OMP_NUM_THREADS=1 python -m ...
                words.pop(0)
            if words[:3] in (["python", "-m", "conformance"], ["python3", "-m", "conformance"]):
                args = words[3:words.index("--")] if "--" in words else words[3:]
                parser().parse_args(args)  # SystemExit (a failure) on an unknown option or a bad value
                parsed += 1
            if words[:1] in (["python"], ["python3"], ["bash"]) and words[1:2] and words[1].startswith("benchmarks/"):
                script = ROOT / words[1]  # a benchmark: it exists, and has each option shown
                assert script.is_file(), command
                source = script.read_text()
                assert all(f'"{word.split("=")[0]}"' in source for word in words[2:] if word.startswith("--")), command
            if words[:1] == ["pytest"]:  # the plugin's options are those it defines
                assert {w.split("=")[0] for w in words if w.startswith("--conformance")} <= _plugin_flags(), command
            if "tox" in words and "-e" in words:
                assert set(words[words.index("-e") + 1].split(",")) <= environments, command
    assert parsed == sum("-m conformance" in c for c in commands)  # none was left out


def test_the_quick_start_output_has_the_report_s_columns(capsys):
    """The README's sample output is the report's format: its header lines are the ones `run` prints today."""
    output = re.search(r"## A first run\n.*?```\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    assert len(output.splitlines()) >= 10
    assert main(["run", "--backend", "numpy", "--cases", str(ROOT / "cases" / "document.yaml"), "--dtype", "float32",
                 "--no-isolation", "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    headers = [line.split() for line in printed if line.startswith("backend ")]
    # the backend table's and the summary's headers (an excerpt: the lists below the summary are left out)
    assert headers[:2] == [line.split() for line in output.splitlines() if line.startswith("backend ")]
    pattern = (r"\d+ passed, \d+ failed, \d+ error, \d+ crashed, \d+ timeout, \d+ skipped, \d+ unsupported, "
               r"\d+ unverified")
    assert re.fullmatch(pattern, printed[-1]) and re.fullmatch(pattern, output.splitlines()[-1])
