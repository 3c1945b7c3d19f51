"""pytest plugin (entry point `pytest11`): `pytest --conformance-backend NAME_OR_MODULE:ATTR` collects one test per
case x dtype (per differentiated tensor for a gradient case) and, with --conformance-properties, one per
property x op x dtype. Without --conformance-backend it does nothing.

A test runs its case through the harness in the test's own process (pytest-xdist's `-n` gives the processes, each
computing on one thread, as `run`'s worker processes do; --conformance-isolation runs the backend's calls in worker
processes, as `run` does), and fails with the harness's message. The options the command line has too are defined
once, in conformance/options.py, and the session is judged by the command line's gate policy (conformance/gates.py)
as well. An expectations manifest turns a listed failure into an xfail and a listed case that passes into an XPASS
(strict with --conformance-strict-expectations or `xfail_strict`).
"""
from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from bce_reference import FLOAT_DTYPES

from . import expectations, gates, judging, options, probing, runner
from .cache import Cache
from .case import Case
from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .execution import one_thread
from .isolation import Settings
from .loader import load_cases
from .registry import Entry
from .results import EXPECTED, GATE_FAILURES, NOT_RUN, UNEXPECTED_PASS, BackendInfo, Result, Run, Status

if TYPE_CHECKING:  # hypothesis (the test extra) is imported only when --conformance-properties asks for it
    from .properties import Property


class Deviation(Exception):
    """What the harness found wrong; its message is the whole failure report."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message

    def __str__(self) -> str:
        return judging.line(self.status, self.message)


@dataclass
class Target:
    """One backend under test, the manifest entries active for it, and the results of the calls made so far."""

    entry: Entry
    info: BackendInfo
    listed: list[expectations.Expectation]
    results: dict[tuple[str, str], list[Result]] = field(default_factory=dict)
    cache: Cache | None = None  # the reference cache, shared with the command line and the other xdist workers
    layouts: tuple[str, ...] | None = None  # --conformance-layouts (None: each case's own)
    isolation: Settings | None = None  # --conformance-isolation: each call in a worker process (None: this one)

    def result(self, case: Case, dtype: str, wrt: str | None, layout: str = "c") -> Result:
        """The result of one case x dtype x layout (one run serves all of a case x dtype's tests)."""
        key = (case.id, dtype)
        if key not in self.results:
            self.results[key] = runner.run([case], [self.entry], [dtype], progress=False, isolation=self.isolation,
                                           cache=self.cache, layouts=self.layouts, infos=[self.info]).results
        return next(r for r in self.results[key] if (r.wrt, r.layout) == (wrt, layout))

    def judged(self, result: Result) -> Result:
        number = expectations.listing(self.listed, result.key)
        return result if number is None else expectations.mark(result, self.listed[number])

    def listing(self, prop: Property, dtype: str) -> expectations.Expectation | None:
        """The first entry that lists the property in `dtype` (by its id, as `case` or `pattern`), if any."""
        number = expectations.listing(self.listed, (self.info.name, prop.id, dtype, None))
        return None if number is None else self.listed[number]


@dataclass
class Plan:
    targets: list[Target]
    cases: list[Case]
    dtypes: tuple[str, ...]  # those asked for (--conformance-dtype), else every dtype
    properties: list[Property]
    strict: bool
    policy: gates.Policy  # the gates of the session (its strictness is pytest's xfail strict, not the policy's)
    layouts: tuple[str, ...] | None = None
    results: list[Result] = field(default_factory=list)  # of the case tests run in this process, as judged

    def work(self) -> Iterator[tuple[Case, str, str | None, str]]:
        """Each case x dtype x checked tensor x memory layout (those of the case, or of --conformance-layouts, that
        apply in the dtype)."""
        for case in self.cases:
            for dtype in case.dtypes:
                if dtype in self.dtypes:
                    yield from ((case, dtype, wrt, layout)
                                for layout in runner.layouts_of(case, dtype, self.layouts or case.layouts)
                                for wrt in case.checks)

    def property_work(self) -> Iterator[tuple[Property, str, str]]:
        for prop in self.properties:
            for op in prop.ops:
                yield from ((prop, op, dtype) for dtype in FLOAT_DTYPES if dtype in self.dtypes)


PLAN = pytest.StashKey[Plan]()
CASES_INPUT = "conformance_cases"
"""The key of the loaded cases (pickled) in an xdist worker's `workerinput`: the controller's own, not a file's."""
RESULTS_OUTPUT = "conformance_results"
"""The key of a worker's results (pickled) in its `workeroutput`, which pytest-xdist hands the controller when the
worker finishes: one message for them all, where a result in each test's report cost the worker and the controller
a tenth of the session (benchmarks/plugin_time.py)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "BCE conformance (bce-conformance)")
    for option in options.PLUGIN:  # the options the command line has too (conformance/options.py)
        option.add_pytest_option(group)
    group.addoption("--conformance-properties", action="store_true",
                    help="also one test per property x op x dtype (hypothesis, profile bce-ci unless "
                         "--hypothesis-profile)")


def _plan(config: pytest.Config, cases: list[Case] | None = None) -> Plan:
    values = options.Values.of_pytest(config.getoption)
    entries = values.entries()
    manifests = values.manifests()
    infos = probing.inspect(entries)
    names = {info.name for info in infos}
    for manifest in manifests:
        if manifest.backend not in names:
            raise ConfigError(f"{manifest.path}: expectations of backend {manifest.backend!r}, which "
                              f"--conformance-backend does not select ({', '.join(sorted(names))})")
    listed, warnings = expectations.active(manifests, infos)
    for warning in warnings:
        config.issue_config_time_warning(pytest.PytestConfigWarning(warning), stacklevel=2)
    cache = Cache() if values[options.CACHE] else None
    layouts, isolation = values[options.LAYOUTS_OPTION], values.isolation()
    targets = [Target(entry, info, [e for e in listed if e.backend == info.name], cache=cache, layouts=layouts,
                      isolation=isolation) for entry, info in zip(entries, infos)]
    dtypes = tuple(values[options.DTYPE] or NUMPY_DTYPES)
    properties = []
    if config.getoption("conformance_properties"):
        from .properties import all_properties

        properties = all_properties()
    strict = bool(values[options.STRICT_EXPECTATIONS] or config.getini("xfail_strict"))
    policy = dataclasses.replace(values.policy([]), strict_expectations=False)  # manifests and strictness: xfail's
    cases = load_cases(values[options.CASES], cache) if cases is None else cases
    return Plan(targets, cases, dtypes, properties, strict, policy, layouts)


def _unmatched(plan: Plan) -> list[str]:
    """Active entries that list no collected case x dtype, nor property x dtype."""
    return [f"{entry.source}: expectation {entry.label} matches no case"
            for target in plan.targets for entry in target.listed
            if not any(entry.selects(target.info.name, case.id, dtype, wrt) for case, dtype, wrt, _ in plan.work())
            and not any(target.listing(prop, dtype) is entry for prop, _, dtype in plan.property_work())]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("conformance_backend"):
        return
    handed = getattr(config, "workerinput", {}).get(CASES_INPUT)
    if hasattr(config, "workerinput"):  # -n N: N processes, one a core, each computing on one thread
        one_thread()  # before probing loads the backends
    try:
        plan = _plan(config, None if handed is None else pickle.loads(handed))
    except ConfigError as exc:
        raise pytest.UsageError(f"conformance: {exc}") from None
    config.stash[PLAN] = plan
    if not hasattr(config, "workerinput"):  # once, in the controlling process of pytest-xdist
        config.pluginmanager.register(Gates(plan), "conformance-gates")
        for warning in _unmatched(plan):
            config.issue_config_time_warning(pytest.PytestConfigWarning(warning), stacklevel=2)
    if plan.properties:
        from . import profiles

        profiles.register()  # before hypothesis's own plugin loads a --hypothesis-profile (this hook runs first)
        if config.getoption("hypothesis_profile", None) is None:
            from hypothesis import settings

            settings.load_profile(profiles.PROFILES["ci"])


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller hands each worker the cases it has loaded: validating them again in every worker
    cost each as much CPU as its share of the tests with a warm reference cache (benchmarks/plugin_time.py)."""
    plan = node.config.stash.get(PLAN, None)
    if plan is not None:
        node.workerinput[CASES_INPUT] = pickle.dumps(plan.cases)


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    plan = config.stash.get(PLAN, None)
    if plan is None:
        return
    for target in plan.targets:
        name = f"conformance-{target.info.name}"
        items.extend(session.genitems(Backend.from_parent(session, name=name, nodeid=name, plan=plan, target=target)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its results to the controller (`Gates`)."""
    plan = session.config.stash.get(PLAN, None)
    output = getattr(session.config, "workeroutput", None)
    if plan is not None and output is not None:
        output[RESULTS_OUTPUT] = pickle.dumps(plan.results)


class Gates:
    """The gates of the session (--conformance-require, --conformance-min-cases, ...), judged once by the gate
    policy on every case test's result, in the controlling process: a gate not met fails the session. A session
    that ran nothing is pytest's to report, as its own exit status does. The results are this process's, and those
    each xdist worker hands over as it finishes; a worker that goes down loses its own, and leaves the run
    unfinished."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.handed: dict[str, list[Result]] = {}  # by each xdist worker
        self.lost: list[str] = []  # the xdist workers that went down, and why
        self.verdict: gates.Verdict | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """A worker is down: finished (its results handed over), or lost (an interrupted one is both)."""
        output, name = getattr(node, "workeroutput", None) or {}, node.gateway.id
        if RESULTS_OUTPUT in output and name not in self.handed:
            self.handed[name] = pickle.loads(output[RESULTS_OUTPUT])
        if error or RESULTS_OUTPUT not in output:
            self.lost.append(f"pytest-xdist worker {name} went down ({error or 'without its results'})")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        results = self.plan.results + [result for handed in self.handed.values() for result in handed]
        run = Run(backends=[target.info for target in self.plan.targets], results=results, complete=not self.lost)
        self.verdict = gates.judge(run, self.plan.policy)
        if self.failed() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def failed(self) -> bool:
        """Whether a gate beyond the tests' own outcomes is not met."""
        return self.verdict is not None and self.verdict.status == gates.EXIT_FAILED and bool(self.verdict.reasons)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.failed():
            assert self.verdict is not None
            terminalreporter.write_sep("=", "conformance gates not met", red=True)
            for reason in [*self.lost, *self.verdict.reasons]:
                terminalreporter.write_line(f"conformance: {reason}")


class Backend(pytest.Collector):
    """The tests of one backend: its cases, then its properties."""

    def __init__(self, *, plan: Plan, target: Target, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan, self.target = plan, target

    def collect(self) -> list[pytest.Item]:
        items: list[pytest.Item] = []
        for case, dtype, wrt, layout in self.plan.work():
            labels = [dtype] + ([] if layout == "c" else [layout]) + ([] if wrt is None else [wrt])
            items.append(CaseTest.from_parent(self, name=f"{case.id}[{'-'.join(labels)}]", target=self.target,
                                              case=case, dtype=dtype, wrt=wrt, layout=layout))
        for prop, op, dtype in self.plan.property_work():
            items.append(PropertyTest.from_parent(self, name=f"{prop.id}-{op}[{dtype}]", target=self.target,
                                                  prop=prop, op=op, dtype=dtype))
        return items


class _Test(pytest.Item):
    target: Target

    def _skip_unavailable(self) -> None:
        if not self.target.info.available:
            pytest.skip(f"{self.target.info.name} is unavailable: {self.target.info.reason}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, Deviation):
            return "\n".join([str(excinfo.value), *getattr(excinfo.value, "__notes__", [])])
        return super().repr_failure(excinfo, style)


class CaseTest(_Test):
    def __init__(self, *, target: Target, case: Case, dtype: str, wrt: str | None, layout: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.case, self.dtype, self.wrt, self.layout = target, case, dtype, wrt, layout

    def runtest(self) -> None:
        self._skip_unavailable()
        plan = self.config.stash[PLAN]
        policy = plan.policy  # as gates.judge: --require-grad, the manifests, strictness
        result = policy.on_unsupported(self.target.result(self.case, self.dtype, self.wrt, self.layout))
        result = policy.on_unexpected_pass(self.target.judged(result))
        plan.results.append(result)  # for the session's gates
        if result.expectation in (EXPECTED, UNEXPECTED_PASS):
            self.add_marker(pytest.mark.xfail(reason=result.message, strict=plan.strict))
        if result.status in NOT_RUN:
            pytest.skip(judging.line(result.status, result.message))
        if result.status in GATE_FAILURES:
            raise Deviation(result.status, result.message)

    def reportinfo(self) -> tuple[Path, int, str]:
        path, _, line = self.case.source.rpartition(":")
        return Path(path), int(line) - 1, self.name


class PropertyTest(_Test):
    def __init__(self, *, target: Target, prop: Property, op: str, dtype: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.prop, self.op, self.dtype = target, prop, op, dtype

    def runtest(self) -> None:
        from hypothesis import given

        from .execution import in_process
        from .properties import not_checkable

        self._skip_unavailable()
        backend = self.target.entry.backend
        assert backend is not None
        reason = not_checkable(backend, self.target.info.name, self.prop, self.op, self.dtype)
        if reason is not None:
            pytest.skip(judging.line(*reason))

        invoke = in_process(backend)
        listed = self.target.listing(self.prop, self.dtype)
        if listed is not None:
            self.add_marker(pytest.mark.xfail(reason=f"listed as {listed.outcome} in {listed.describe()}",
                                              raises=Deviation, strict=self.config.stash[PLAN].strict))

        @given(self.prop.strategy(self.op, self.dtype))
        def holds(sample: Any) -> None:
            verdict = self.prop.check(invoke, sample)
            if verdict is not None and verdict.status != Status.PASSED:
                raise Deviation(verdict.status, verdict.message)

        try:
            holds()
        except Deviation as deviation:
            if deviation.status in NOT_RUN:  # as a case test: what the backend lacks is skipped, not failed
                pytest.skip(str(deviation))
            if listed is None or deviation.status == listed.outcome:
                raise
            pytest.fail(f"{deviation}; listed as {listed.outcome} in {listed.source}, but {deviation.status}",
                        pytrace=False)

    def reportinfo(self) -> tuple[str, None, str]:
        return f"property {self.prop.id}", None, self.name
