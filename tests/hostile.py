"""A seeded generator of hostile files of every kind the harness reads, and the check each must pass.

Kinds: case files (YAML), results files (JSON Lines), JSON reports, expectations manifests (YAML) and the
reports of shards (for `merge`). Each file is a valid base file mutated once: in its structure (a field's value
replaced by one of the wrong type or size, NaN, a lone surrogate, a shell command, terminal escapes, nesting
100,000 deep) or in its text (cut, a line deleted or doubled, bytes that are not UTF-8). The same seed gives the
same files. `check` feeds a file to every command that reads its kind (`cases`, `report` in each format, `diff`,
`merge`, `run --resume`, `--expectations`): each must end with exit 0 or 1, or with exit 2 and the one documented
line `conformance: error: ...` on standard error; any other exception, or more than 2 s, fails.
"""
from __future__ import annotations

import contextlib
import io
import json
import random
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from conformance import runner
from conformance.backends.numpy_backend import NumpyBackend
from conformance.cli import main
from conformance.journal import Journal
from conformance.loader import default_cases_dir, load_cases
from conformance.registry import Entry
from conformance.results import Shard
from conformance.shards import owner

FAULT_CASES = Path(__file__).parent / "data" / "fault_cases.yaml"
KINDS = ("case", "results", "report", "manifest", "shard")
DEADLINE = 2.0
"""CPU seconds one file may take, every command that reads it together (all in this process): a pathological parse
burns CPU, while the load of a shared machine, which stretches wall time, does not count."""

RAW_JSON = [
    "1e400", "-1e400", "Infinity", "NaN", "-Infinity", "1" * 5000, "0.1e-99999", '"\\ud800"', '"\\udfff x"',
    "[" * 100_000 + "]" * 100_000, '{"a": ' * 30_000 + "1" + "}" * 30_000,
]
"""JSON text that no Python value dumps to: literals beyond a float, a 5000-digit integer, lone surrogates, depth."""
RAW_YAML = [
    "0x" + "f" * 6000, "1" * 5000, ".nan", "-.inf", "'" + "1" * 30_000 + "x'", "'" + "1" * 1_000_000 + "x'",
    "2021-13-45", "*nowhere", "&a [*a]", "!!python/object/apply:os.system ['true']", "[" * 200 + "]" * 200,
    "{? [1, 2] : 3}", "!!binary AAAA", "1e99999", "0o" + "7" * 500,
]
"""YAML text that no dumped value gives: huge integers, NaN, long strings that tempt a backtracking pattern,
aliases, tags, depth."""
VALUES: list[Any] = [
    {}, [], None, True, False, 0, -1, 2**63, 1.5, -0.0, 1e308, "", "x", "nan", "inf", "-inf", "float7",
    "float32;touch${IFS}PWNED", "$(touch PWNED)", "\x1b]0;title\x07\x1b[2J", "\u202e\r\x00", "a" * 5000,
    ["float32"], {"nested": {"deeper": [1, {"x": None}]}}, [[[[[]]]]], "passed", "bce", "../../etc/passwd",
]
"""Values of the wrong type, size or content for some field."""


@dataclass(frozen=True)
class Hostile:
    kind: str
    name: str
    data: bytes


@dataclass(frozen=True)
class Bases:
    """The valid files each kind of hostile file is made from (and what the checks pair them with)."""

    folder: Path
    results: Path
    report: Path
    manifest: Path
    shards: tuple[Path, Path]


def _result_run(cases_path: Path, results: Path, shard: Shard | None = None, ids: set[str] | None = None) -> None:
    cases = [c for c in load_cases([cases_path]) if ids is None or c.id in ids]
    with Journal(results, command="python -m conformance run", shard=shard) as journal:
        runner.run(cases, [Entry("numpy", "built-in", NumpyBackend())], progress=False, isolation=None,
                   journal=journal)


def bases(folder: Path) -> Bases:
    """Write the valid base files into `folder`: a finished results file and its JSON report, a manifest, and the
    JSON reports of the two shards of a run."""
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "base.jsonl"
    _result_run(FAULT_CASES, results)
    report = folder / "base.json"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["report", str(results), "--format", "json", "--output", str(report)])
    manifest = folder / "base-manifest.yaml"
    manifest.write_text(yaml.safe_dump({"backend": "numpy", "expectations": [
        {"case": "fault-before", "dtypes": ["float32"], "outcome": "failed", "reason": "a deviation",
         "budget": {"max_ulp": 4.0, "max_headroom": 2.5}, "link": "https://example.org/1"},
        {"pattern": "^fault-a", "wrt": ["input"], "when": {"version": ">=1", "device": "^cpu$"},
         "outcome": "crashed", "reason": "another"},
    ]}, sort_keys=False))
    ids = tuple(c.id for c in load_cases([FAULT_CASES]))
    shard_reports = []
    for index in (1, 2):
        shard_results = folder / f"shard{index}.jsonl"
        _result_run(FAULT_CASES, shard_results, Shard(index, 2, ids), {i for i in ids if owner(i, 2) == index})
        shard_report = folder / f"shard{index}.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["report", str(shard_results), "--format", "json", "--output", str(shard_report)])
        shard_reports.append(shard_report)
    return Bases(folder, results, report, manifest, (shard_reports[0], shard_reports[1]))


# --- mutation --------------------------------------------------------------------------------------

def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a parsed document: key and index paths."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:8]):
            found += _paths(item, (*prefix, index))
    return found


def _replace(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    *parents, last = path
    target = document
    for step in parents:
        target = target[step]
    target[last] = value
    return document


def _structural(rng: random.Random, document: Any, raws: list[str], dump: Callable[[Any], str]) -> str:
    """The document with one place replaced by a hostile value, or by raw text that no value dumps to."""
    path = rng.choice(_paths(document)[1:] or [()])
    if rng.random() < 0.4:
        raw = rng.choice(raws)
        return dump(_replace(document, path, "RAWTOKEN")).replace('"RAWTOKEN"', raw).replace("RAWTOKEN", raw, 1)
    if rng.random() < 0.15 and path:  # a key of the wrong kind, or an unknown one
        *parents, last = path
        parent = _replace(document, (), document)
        for step in parents:
            parent = parent[step]
        if isinstance(parent, dict):
            parent[rng.choice(["unknown", "\x1b[31mred", "", "record"])] = parent.pop(last)
            return dump(document)
    return dump(_replace(document, path, rng.choice(VALUES)))


def _textual(rng: random.Random, text: str) -> bytes:
    lines = text.splitlines(keepends=True)
    choice = rng.randrange(7)
    if choice == 0:
        return text.encode()[: rng.randrange(len(text.encode()) + 1)]
    if choice == 1 and lines:
        del lines[rng.randrange(len(lines))]
    elif choice == 2 and lines:
        index = rng.randrange(len(lines))
        lines.insert(index, lines[index])
    elif choice == 3 and len(lines) > 1:
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 4:
        data = bytearray(text.encode())
        position = rng.randrange(len(data) + 1)
        data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        return bytes(data)
    elif choice == 5:
        return b""
    else:
        return (text + "\n" + text).encode()
    return "".join(lines).encode()


def _jsonl(rng: random.Random, text: str) -> bytes:
    """A results file with one record mutated (or its text)."""
    if rng.random() < 0.25:
        return _textual(rng, text)
    lines = text.splitlines()
    index = rng.randrange(len(lines))
    lines[index] = _structural(rng, json.loads(lines[index]), RAW_JSON, lambda v: json.dumps(v, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def _json(rng: random.Random, text: str) -> bytes:
    if rng.random() < 0.25:
        return _textual(rng, text)
    mutated = _structural(rng, json.loads(text), RAW_JSON, lambda v: json.dumps(v, indent=1, ensure_ascii=False))
    return mutated.encode("utf-8", "surrogatepass")


def _yaml(rng: random.Random, text: str) -> bytes:
    if rng.random() < 0.25:
        return _textual(rng, text)
    document = yaml.safe_load(text)
    dump = lambda v: yaml.safe_dump(v, sort_keys=False, allow_unicode=True, width=10**9)  # noqa: E731
    return _structural(rng, document, RAW_YAML, dump).encode("utf-8", "surrogatepass")


def generate(seed: int, count: int, base: Bases) -> list[Hostile]:
    """`count` hostile files, the kinds in turn; the same seed and bases give the same files."""
    rng = random.Random(seed)
    case_files = [*sorted(default_cases_dir().glob("*.yaml")), FAULT_CASES]
    texts = {"results": base.results.read_text(), "report": base.report.read_text(),
             "manifest": base.manifest.read_text(), "shard": base.shards[0].read_text()}
    mutate = {"results": _jsonl, "report": _json, "manifest": _yaml, "shard": _json, "case": _yaml}
    files = []
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        text = rng.choice(case_files).read_text() if kind == "case" else texts[kind]
        suffix = {"case": "yaml", "results": "jsonl", "manifest": "yaml"}.get(kind, "json")
        files.append(Hostile(kind, f"{number:05d}-{kind}.{suffix}", mutate[kind](rng, text)))
    return files


# --- the check -------------------------------------------------------------------------------------

def _commands(hostile: Hostile, path: Path, base: Bases) -> list[list[str]]:
    """Every command that reads a file of this kind, as a user would give it."""
    file = str(path)
    if hostile.kind == "case":
        return [["cases", "--cases", file]]
    if hostile.kind == "results":
        resume = path.with_name(path.stem + ".resume.jsonl")
        resume.write_bytes(hostile.data)
        return [["report", file], *(["report", file, "--partial", "--format", f] for f in
                                    ("table", "markdown", "json", "junit")),
                ["diff", str(base.report), file], ["merge", file, str(base.shards[1]), "-o", file + ".merged"],
                ["run", "--cases", str(FAULT_CASES), "-k", "^fault-after$", "--backend", "numpy", "--no-isolation",
                 "--no-progress", "--resume", str(resume)]]
    if hostile.kind == "report":
        return [["diff", str(base.report), file], ["diff", file, file, "--format", "markdown"]]
    if hostile.kind == "manifest":
        return [["report", str(base.results), "--expectations", file, "--format", "markdown"]]
    return [["merge", file, str(base.shards[1]), "-o", file + ".merged", "--format", "table"],
            ["merge", str(base.shards[1]), file, "-o", file + ".merged"]]


@dataclass(frozen=True)
class Outcome:
    loaded: int  # commands that ended 0 or 1
    refused: int  # commands that ended 2 with the one-line error
    seconds: float  # CPU seconds


def check(hostile: Hostile, folder: Path, base: Bases) -> Outcome:
    """Feed the file to every command that reads its kind; raise AssertionError on anything but a report or the
    documented one-line error (exit 2, `conformance: error: ...`), on a terminal escape printed, or on a slow file."""
    path = folder / hostile.name
    path.write_bytes(hostile.data)
    loaded = refused = 0
    start = time.process_time()
    for argv in _commands(hostile, path, base):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        printed = out.getvalue() + err.getvalue()
        printed.encode("utf-8")  # a lone surrogate would stop a real terminal's stream here
        assert "\x1b" not in printed, (hostile.name, argv)
        for line in out.getvalue().splitlines():  # a rerun command is one command, every argument quoted
            if line.strip().startswith("python -m conformance"):
                assert shlex.join(shlex.split(line)) == line.strip(), (hostile.name, line)
        lines = err.getvalue().splitlines()
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("conformance: error: "), (hostile.name, argv, lines)
            refused += 1
        else:
            assert code in (0, 1), (hostile.name, argv, code, lines)
            loaded += 1
    seconds = time.process_time() - start
    assert seconds < DEADLINE, f"{hostile.name} took {seconds:.2f} CPU s"
    return Outcome(loaded, refused, seconds)
