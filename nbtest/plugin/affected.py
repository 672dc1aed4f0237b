"""The pytest side of `--nbtest-affected`: deselect unchanged notebooks, record the outcomes.

Before any kernel starts, each collected notebook's fingerprint is compared with its cache
entry (nbtest.affected.store); the unchanged ones are deselected and the session says so in one line
(`-v` lists them). Each notebook that runs carries its fingerprint on its test report (a
report attribute, so it crosses from xdist workers like the rest of the report), and the one
process that writes (the xdist controller, or the single process) stores each notebook's
outcome at the end: a pass with a complete fingerprint can be reused, anything else runs next
time. A cache that cannot be written (read-only, full disk) is warned about once, as pytest's
own cache does, and changes neither the results nor the exit status.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from ..affected.fingerprint import (
    git_commit,
    kernelspec_identity,
    static_fingerprint,
    verdict_options,
)
from ..affected.schema import INCOMPLETE, PARTIAL
from ..affected.store import (
    CACHE_FOLDER,
    Checker,
    Decision,
    Store,
    follow_products,
    new_entry,
    when,
)
from ..handoff import is_worker, received, send
from ..results import NB_ERROR, NB_FAILED, NB_PASSED, NOT_RUN, AffectedRecord

STATIC_KEY = pytest.StashKey[dict[str, Any]]()  # an item's static fingerprint, set at collection
PENDING_KEY = pytest.StashKey[dict[str, Any]]()  # a finished run's fingerprint, for its next report
REPORT_ATTR = "nbtest_affected"  # the report attribute carrying a run's fingerprint
WORKER_KEY = "nbtest_affected"  # the worker's decisions, for the summary (nbtest.handoff)


class AffectedSession:
    """A pytest plugin object, registered by nbtest.plugin when `affected` is on."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.root = Path(config.rootpath)
        self.decisions: list[Decision] | None = None  # None: no notebook was collected
        self.outcomes: dict[str, dict[str, Any]] = {}  # writer: per notebook, this session
        self.commit = git_commit(self.root)
        self.warned = False  # the one warning about a cache that cannot be written

    @functools.cached_property
    def store(self) -> Store | None:
        """The entries' folder in pytest's cache; None when the cache is off. (Made on first
        use: pytest's cacheprovider makes `config.cache` in a pytest_configure of its own.)
        A folder that cannot be made is warned about; its entries then read as missing."""
        cache = getattr(self.config, "cache", None)
        if cache is None:
            return None
        try:
            return Store(Path(cache.mkdir(CACHE_FOLDER)))
        except OSError as exc:
            folder = Path(self.root, os.path.expanduser(self.config.getini("cache_dir")), "d",
                          CACHE_FOLDER)
            self.warn_unwritable(folder, exc)
            return Store(folder)

    def warn_unwritable(self, path: Path, exc: OSError) -> None:
        """Warn once (the writer only: workers' warnings would repeat it) that the cache
        cannot be written, as pytest's own cache does; the session goes on."""
        if self.warned or is_worker(self.config):
            return
        self.warned = True
        warnings.warn(pytest.PytestCacheWarning(
            f"nbtest: could not write the --nbtest-affected cache ({path}: {exc}); this "
            "session's results are not kept, so its notebooks run again next time"),
            stacklevel=2)

    # -- collection: on each worker (all decide alike) or the single process -------------
    def deselect(self, items: list[pytest.Item]) -> None:
        """Drop the items of notebooks unchanged since their last pass (plugin's
        collection_modifyitems calls this after the marker skips, before the preflight)."""
        from .state import CONFIG_KEY, is_notebook_item

        checker = Checker(self.root, self.store, self.config.stash[CONFIG_KEY].affected_max_age)
        by_path: dict[Path, list[pytest.Item]] = {}
        for item in items:
            if is_notebook_item(item):
                by_path.setdefault(item.path, []).append(item)
        decisions, dropped = [], []
        groups: dict[str, list[pytest.Item]] = {}
        options = verdict_options(self.config)
        for path, group in by_path.items():
            if any(item.get_closest_marker("skip") for item in group):
                continue  # skipped for a reason: shown as skipped, as without the mode
            first: Any = group[0]
            static = static_fingerprint(first.parent.notebook, first.plan.config, path,
                                        self.root)
            static["settings"].update(options)
            try:
                decision = checker.decide(static)
            except Exception as exc:  # when in doubt, run it: never a collection error
                decision = Decision(static["notebook"], [
                    f"its fingerprint could not be compared ({type(exc).__name__}: {exc})"])
            decisions.append(decision)
            groups[decision.notebook] = group
            for item in group:
                item.stash[STATIC_KEY] = static
        ranks = follow_products(decisions, self.root)
        for decision in decisions:
            if not decision.runs:
                dropped += groups[decision.notebook]
        self.decisions = decisions
        if dropped:
            gone = {id(item) for item in dropped}
            self.config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if id(item) not in gone]
        if any(ranks.values()):  # producers before their consumers (a stable sort)
            items.sort(key=lambda item: ranks.get(
                item.stash[STATIC_KEY]["notebook"] if STATIC_KEY in item.stash else "", 0))

    # -- the run: on the process that runs the notebook ---------------------------------
    def pytest_nbtest_notebook_done(self, item: pytest.Item, run: Any, result: Any) -> None:
        """Keep the run's whole fingerprint for the item's next report."""
        static = item.stash.get(STATIC_KEY, None)
        found = AffectedRecord.of(result.extras)
        if static is None or found is None:
            return  # deselection never saw it (e.g. cache: false): nothing to record
        settings = static["settings"]
        record = {**static, **found.as_dict(), "result": result.status,
                  "kernelspec": kernelspec_identity(settings["kernel"], str(self.root))}
        if result.status == NB_PASSED and not all(c.status != NOT_RUN for c in result.cells):
            record["result"] = PARTIAL  # per-cell items of which only some were selected
        item.stash[PENDING_KEY] = record

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """Attach a finished run's fingerprint to the report of the phase it finished in."""
        report = yield
        record = item.stash.get(PENDING_KEY, None)
        if record is not None:
            del item.stash[PENDING_KEY]
            setattr(report, REPORT_ATTR, record)
        return report

    # -- the writer: the xdist controller or the single process -------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Note each notebook's failures and its run's fingerprint."""
        if is_worker(self.config):
            return
        path = report.nodeid.split("::")[0]
        record = getattr(report, REPORT_ATTR, None)
        if not path.endswith(".ipynb") and record is None:
            return
        outcome = self.outcomes.setdefault(path, {})
        if report.failed and "failed" not in outcome:
            crash = getattr(report.longrepr, "reprcrash", None)
            why = getattr(crash, "message", "") or str(report.longrepr).strip()
            where = report.nodeid.partition("::")[2]
            why = f"{where}: {why}" if where else why
            outcome["failed"] = (NB_FAILED if report.when == "call" else NB_ERROR,
                                 why.splitlines()[0][:200] if why else report.when)
        if record is not None:
            outcome["record"] = record

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Workers: send the decisions. Writer: store each notebook's outcome. Nothing left
        to run because nothing changed is a success, not pytest's "no tests" (exit 5)."""
        if send(self.config, WORKER_KEY, None if self.decisions is None else
                [[d.notebook, d.reasons, d.entry] for d in self.decisions]):
            return
        if (session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.decisions
                and not self.config.option.collectonly
                and any(not d.runs for d in self.decisions)):
            session.exitstatus = pytest.ExitCode.OK
        if self.store is None:
            return
        for path, outcome in sorted(self.outcomes.items()):
            record = outcome.get("record")
            entry = self._entry(record["notebook"] if record else path, outcome)
            if entry is None:
                continue
            try:
                self.store.save(entry)
            except OSError as exc:
                self.warn_unwritable(self.store.path_for(entry["notebook"]), exc)

    def _entry(self, notebook: str, outcome: dict[str, Any]) -> dict[str, Any] | None:
        """The cache entry for a notebook that ran this session; None to keep the old one."""
        record = outcome.get("record")
        # What it wrote and read, whatever its outcome: a producer runs before its consumers
        # (store.follow_products), also when the consumer failed last time.
        products: dict[str, Any] = {}
        if record and "products" in record:
            products["products"] = record["products"]
            products["inputs"] = sorted(p for p, d in record["files"].items() if d != "missing")
        if "failed" in outcome:
            status, why = outcome["failed"]
            return new_entry(notebook, status, self.commit, why=why, **products)
        if record is None or record["result"] == PARTIAL:
            return None  # not run (a skip marker), or only some of its cells
        if record["result"] != NB_PASSED:
            return new_entry(notebook, record["result"], self.commit, **products)
        if not record["complete"]:
            return new_entry(notebook, INCOMPLETE, self.commit, why=record["why"], **products)
        products.pop("inputs", None)  # a pass has them all, with digests, in `files`
        fields = {k: v for k, v in record.items()
                  if k not in ("notebook", "result", "complete", "why", "interpreter")}
        return new_entry(notebook, NB_PASSED, self.commit, **fields)

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller: the first worker's decisions are everyone's (all read the same cache)."""
        found = received(node, WORKER_KEY)
        if found is not None and self.decisions is None:
            self.decisions = [Decision(n, r, e) for n, r, e in found]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line: how many notebooks did not run, unchanged since when; -v lists them."""
        if self.decisions is None:
            return
        unchanged = [d for d in self.decisions if not d.runs]
        if self.store is None:
            terminalreporter.write_line("nbtest: --nbtest-affected needs pytest's cache "
                                        "(-p no:cacheprovider turns it off): every notebook ran")
            return
        entries = sorted((d.entry for d in unchanged if d.entry is not None),
                         key=lambda entry: str(entry.get("time")))
        stamps = list(dict.fromkeys(when(entry) for entry in entries))
        since = f" ({stamps[0]})" if len(stamps) == 1 else \
            f" ({stamps[0]} .. {stamps[-1]})" if stamps else ""
        terminalreporter.write_line(
            f"nbtest: {len(unchanged)} of {len(self.decisions)} notebooks unchanged since "
            f"their last pass{since}, not run")
        if self.config.getoption("verbose") > 0:
            for decision in sorted(unchanged, key=lambda d: d.notebook):
                terminalreporter.write_line(f"  {decision.notebook}: {decision.describe()}")
