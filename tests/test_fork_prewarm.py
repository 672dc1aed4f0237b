"""Pre-warmed kernels: in real pytest sessions (pytester subprocesses), the kernel pre-started
for the next notebook has that notebook's folder and environment; xdist workers fork from the
controller's one template; a pre-started kernel that is never used is shut down, whatever ends
the session (deselection, a skip, -x, Ctrl-C, --lf).

Each such session is tagged with a unique environment variable; the template it starts
inherits the tag, forked kernels keep the template's initial environment block and spawned
ones get the tag too, so `/proc/*/environ` tells exactly which processes a session left
behind. No test asserts a time: every wait is a hang guard.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers.notebooks import write_notebook
from helpers.processes import pid_gone
from helpers.pytest_sessions import interrupt_once_started, junit_properties, output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]

TAG_VAR = "NBTEST_FORK_PREWARM_TAG"


# Each notebook of these sessions writes `<name>.json`: its pid, NBTEST_NOTEBOOK, cwd, parent
# and the other live kernels forked by the same template at the moment its first cell runs
# (by then, the next notebook's pre-warmed kernel has been forked).
REPORT = textwrap.dedent("""\
    import json, os, psutil
    me = psutil.Process()
    parent = me.parent()

    def live_children():
        # Other kernels of a shared template come and go: skip those exiting meanwhile.
        for p in parent.children():
            try:
                if p.pid != me.pid and p.status() != psutil.STATUS_ZOMBIE:
                    yield p.pid, " ".join(p.cmdline())
            except psutil.Error:
                pass

    children = list(live_children())  # a forked kernel's cmdline is its template's
    siblings = [pid for pid, _ in children]
    name = os.path.basename(os.environ["NBTEST_NOTEBOOK"])[:-len(".ipynb")]
    with open(os.path.join(os.environ["NBTEST_REPORTS"], name + ".json"), "w") as fh:
        json.dump({"pid": os.getpid(), "notebook": os.environ["NBTEST_NOTEBOOK"],
                   "cwd": os.getcwd(), "siblings": siblings, "ppid": parent.pid,
                   "parent": " ".join(parent.cmdline()),
                   "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                   # of a spawned kernel (the harness's children): templates started
                   "templates": [c for _, c in children
                                 if "nbtest.kernel.forkserver_main" in c]}, fh)
""")


# A conftest for those sessions: once the session is over (pytest_unconfigure runs after
# nbtest's own session-finish clean-up, also after -x or Ctrl-C), it lists what is still alive
# of the session's kernels, other than the warm template that is stopped at exit. It must be
# looked at from inside: once pytest has exited, a leaked kernel dies on its own within a
# second (ipykernel's parent poller) and the leak could no longer be seen.
CONFTEST_WATCH = f"""
import json, os, psutil

def pytest_unconfigure(config):
    needle = ("\\0{TAG_VAR}=" + os.environ["{TAG_VAR}"] + "\\0").encode()
    alive = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            with open(f"/proc/{{proc.pid}}/environ", "rb") as fh:
                if needle not in b"\\0" + fh.read() + b"\\0":
                    continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
            if "nbtest.kernel.forkserver_main" in cmdline and proc.ppid() == os.getpid():
                continue  # the warm template: stopped at exit
            alive.append(f"pid {{proc.pid}}: {{cmdline[:150]}}")
        except (OSError, psutil.Error):
            continue
    with open(os.path.join(os.environ["NBTEST_REPORTS"], "alive_at_end.json"), "w") as fh:
        json.dump(alive, fh)
"""


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose initial environment carries `TAG_VAR=tag`."""
    needle = f"\0{TAG_VAR}={tag}\0".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if needle not in b"\0" + fh.read() + b"\0":
                    continue
            proc = psutil.Process(int(entry.name))
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def assert_nothing_left(tag: str, reports: Path) -> None:
    """No kernel was alive when the session ended, and no process of it is alive now."""
    alive = json.loads((reports / "alive_at_end.json").read_text())
    assert alive == [], "kernels alive at the end of the session:\n" + "\n".join(alive)
    left = tagged_processes(tag)
    if left:
        lines = []
        for proc in left:
            try:
                lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:150]}")
                proc.kill()
            except psutil.Error:
                pass
        raise AssertionError("processes left behind by the session:\n" + "\n".join(lines))


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[dict[str, Any]]:
    """A tag for the pytest sessions of this test, the reports folder, and a notebook maker."""
    tag = uuid.uuid4().hex
    reports = pytester.path / "reports"
    reports.mkdir()
    monkeypatch.setenv(TAG_VAR, tag)
    monkeypatch.setenv("NBTEST_REPORTS", str(reports))
    # Always fork (not "auto", which spawns until the template is ready), so what each
    # notebook sees of the template's other kernels does not depend on timing.
    # Preload on (a stdlib module): every fault test here also holds for a preloaded template.
    monkeypatch.setenv("PYTEST_ADDOPTS",
                       "-p no:randomly --nbtest-fork=yes --nbtest-preload decimal")
    pytester.makeconftest(CONFTEST_WATCH)

    def nb(name: str, cells: list[Any] | None = None, **metadata: Any) -> Path:
        return write_notebook(pytester.path / name, [REPORT, *(cells or ())], metadata or None)

    def report(name: str) -> dict[str, Any] | None:
        path = reports / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    yield {"tag": tag, "nb": nb, "report": report, "reports": reports}
    for proc in tagged_processes(tag):  # a failed test still leaves nothing running
        try:
            proc.kill()
        except psutil.Error:
            pass


def test_three_notebooks_each_get_their_own_prewarmed_kernel(
        pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    """While a notebook runs, the next one's kernel is already forked, in that notebook's
    folder with its NBTEST_NOTEBOOK; the last one pre-starts nothing."""
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next",
               "nbtest.plugin.items.NotebookItem.new_session",
               "nbtest.plugin.pytest_runtest_protocol")
    paths = [session["nb"](f"d{i}/{name}.ipynb") for i, name in enumerate("abc", 1)]
    result = run_pytest(pytester, "--nbtest", "--nbtest-fork", "yes", "-p", "no:cacheprovider",
                        "--junitxml=out.xml")
    result.assert_outcomes(passed=3)
    a, b, c = (session["report"](name) for name in "abc")
    assert len({a["pid"], b["pid"], c["pid"]}) == 3
    for facts, path in zip((a, b, c), paths):
        assert facts["notebook"] == str(path.resolve())
        assert facts["cwd"] == str(path.parent.resolve())
        assert "nbtest.kernel.forkserver_main" in facts["parent"]
    assert a["siblings"] == [b["pid"]], "b's kernel was not pre-started while a ran"
    assert b["siblings"] == [c["pid"]], "c's kernel was not pre-started while b ran"
    assert c["siblings"] == []
    starts = junit_properties(pytester.path / "out.xml", prefix="nbtest kernel start")
    assert {name: p["nbtest kernel start"] for name, p in starts.items()} == {
        f"d{i}/{name}.ipynb": "fork" for i, name in enumerate("abc", 1)}  # node ids
    assert_nothing_left(session["tag"], session["reports"])


def test_xdist_workers_fork_from_one_template_the_controller_started(
        pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    """Under -n 2 both workers fork their kernels from the controller's template: one
    template's imports, begun while the workers start, not one per worker."""
    this_tests("nbtest.plugin.fork_template.XdistForkTemplate",
               "nbtest.kernel.forkserver_client.ForkServer.adopt",
               "nbtest.kernel.forkserver_client.ForkServer.describe_owned")
    names = [f"n{i}" for i in range(6)]
    for name in names:
        session["nb"](f"{name}.ipynb")
    result = run_pytest(pytester, "--nbtest", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    reports = [session["report"](name) for name in names]
    assert {r["worker"] for r in reports} == {"gw0", "gw1"}
    assert len({r["ppid"] for r in reports}) == 1, "kernels of both workers, one template"
    assert "nbtest.kernel.forkserver_main" in reports[0]["parent"]
    assert_nothing_left(session["tag"], session["reports"])


def test_a_single_notebook_starts_no_template(pytester: pytest.Pytester,
                                              session: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """fork=auto with one notebook: its kernel is spawned at once and no template is started
    to compete with it for the CPU."""
    this_tests("nbtest.plugin.pytest_collection_finish")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")  # not the fixture's fork=yes
    session["nb"]("solo.ipynb")
    result = run_pytest(pytester, "--nbtest", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    solo = session["report"]("solo")
    assert "nbtest.kernel.forkserver_main" not in solo["parent"]
    assert solo["templates"] == []
    assert any("solo.ipynb" in line and "kernel: spawn" in line for line in result.stdout.lines)
    assert_nothing_left(session["tag"], session["reports"])


def test_fork_no_spawns_every_kernel(pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    this_tests("nbtest.kernel.provisioner.ForkProvisioner.launch_kernel",
               "nbtest.kernel.launch.launch_kernel")
    for name in "ab":
        session["nb"](f"{name}.ipynb")
    result = run_pytest(pytester, "--nbtest", "--nbtest-fork", "no", "-p", "no:cacheprovider",
                        "--junitxml=out.xml")
    result.assert_outcomes(passed=2)
    a, b = session["report"]("a"), session["report"]("b")
    assert "nbtest.kernel.forkserver_main" not in a["parent"] + b["parent"]
    assert "pytest" in a["parent"]
    starts = junit_properties(pytester.path / "out.xml", prefix="nbtest kernel start")
    assert {p["nbtest kernel start"] for p in starts.values()} == {"spawn"}
    assert_nothing_left(session["tag"], session["reports"])


def test_verbose_output_names_the_start_up(pytester: pytest.Pytester,
                                           session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest")
    session["nb"]("a.ipynb")
    result = run_pytest(pytester, "--nbtest", "--nbtest-fork", "yes", "-v", "-p",
                        "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert any("a.ipynb" in line and "fork" in line for line in result.stdout.lines), \
        result.stdout.str()


@pytest.mark.parametrize("how", [["--deselect", "d2/b.ipynb"], ["-k", "not d2"]],
                         ids=["deselect", "k"])
def test_deselected_next_notebook_gets_no_kernel(pytester: pytest.Pytester,
                                                 session: dict[str, Any], how: list[str]
                                                 ) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next")
    for i, name in enumerate("abc", 1):
        session["nb"](f"d{i}/{name}.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", *how)
    result.assert_outcomes(passed=2, deselected=1)
    a, b, c = (session["report"](name) for name in "abc")
    assert b is None
    assert a["siblings"] == [c["pid"]] and c["siblings"] == []
    assert_nothing_left(session["tag"], session["reports"])


CONFTEST_SKIPIF = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if item.name == "b.ipynb":
            item.add_marker(pytest.mark.skipif(True, reason="skipif by conftest"))
"""


@pytest.mark.parametrize("how", ["slow-marker", "skipif-by-conftest"])
def test_skipped_next_notebook_leaves_no_kernel(pytester: pytest.Pytester,
                                                session: dict[str, Any], how: str) -> None:
    """`slow` without --runslow: no kernel is pre-started for it. A skipif marker added by a
    conftest is not seen before the skip: the pre-started kernel is killed at its teardown,
    before the following notebook runs."""
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next",
               "nbtest.plugin.items.NotebookItem.drop_prewarmed",
               "nbtest.plugin.pytest_runtest_teardown")
    session["nb"]("a.ipynb")
    if how == "slow-marker":
        session["nb"]("b.ipynb", nbtest={"markers": ["slow"]})
    else:
        session["nb"]("b.ipynb")
        pytester.makeconftest(CONFTEST_WATCH + CONFTEST_SKIPIF)
    session["nb"]("c.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    a, b, c = (session["report"](name) for name in "abc")
    assert b is None
    assert c["siblings"] == [], "a kernel pre-started for the skipped notebook is still alive"
    if how == "slow-marker":
        assert a["siblings"] == []  # nothing pre-started for a notebook that will be skipped
    else:
        assert len(a["siblings"]) == 1  # b's kernel was pre-started, then dropped
    assert_nothing_left(session["tag"], session["reports"])


def test_x_after_a_failure_kills_the_prewarmed_kernel(pytester: pytest.Pytester,
                                                      session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.close_open_sessions", "nbtest.plugin.pytest_sessionfinish")
    session["nb"]("a.ipynb", ["assert False, 'a fails'"])
    session["nb"]("b.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-x")
    result.assert_outcomes(failed=1)
    assert "stopping after 1 failures" in output(result)
    a = session["report"]("a")
    assert len(a["siblings"]) == 1  # b's kernel had been pre-started
    assert session["report"]("b") is None
    assert_nothing_left(session["tag"], session["reports"])


def interrupt_while_a_sleeps(pytester: pytest.Pytester, session: dict[str, Any]
                             ) -> dict[str, Any]:
    """Run a.ipynb (its cell starts a `sleep 600` in a session of its own, then sleeps) and
    b.ipynb; SIGINT the pytest process while a's cell sleeps. What a saw, and what was left."""
    session["nb"]("a.ipynb", [
        "import subprocess, time\n"
        "away = subprocess.Popen(['sleep', '600'], start_new_session=True,\n"
        "                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "open('away.pid', 'w').write(str(away.pid))\n"
        "open('sleeping.txt', 'w').write('yes')\n"
        "time.sleep(120)"])
    session["nb"]("b.ipynb")
    seen: dict[str, Any] = {}
    interrupt_once_started(["--nbtest", "-p", "no:cacheprovider"], pytester.path,
                           pytester.path / "sleeping.txt",
                           on_started=lambda: seen.update(a=session["report"]("a")))
    a = seen["a"]
    assert session["report"]("b") is None
    alive = json.loads((session["reports"] / "alive_at_end.json").read_text())
    return {"a": a, "away": int((pytester.path / "away.pid").read_text()), "alive": alive}


def test_ctrl_c_kills_the_prewarmed_kernel(pytester: pytest.Pytester,
                                           session: dict[str, Any]) -> None:
    """The kernel pre-started for b is gone when the interrupted session ends."""
    this_tests("nbtest.plugin.items.close_open_sessions",
               "nbtest.kernel.forkserver_client.ForkServer.stop")
    seen = interrupt_while_a_sleeps(pytester, session)
    assert len(seen["a"]["siblings"]) == 1  # b's kernel was pre-started and waiting
    prewarmed = seen["a"]["siblings"][0]
    assert not any(line.startswith(f"pid {prewarmed}:") for line in seen["alive"]), seen["alive"]
    assert pid_gone(prewarmed, timeout=0)


def test_ctrl_c_kills_the_running_kernel_before_the_session_ends(
        pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.plugin.items.close_open_sessions")
    seen = interrupt_while_a_sleeps(pytester, session)
    assert seen["alive"] == [], "alive when the session ended:\n" + "\n".join(seen["alive"])
    # Today the `sleep 600` the cell started in a session of its own (it carries the kernel's
    # token) even outlives pytest: nothing kills it once the kernel is gone.
    assert pid_gone(seen["away"], timeout=10)
    assert_nothing_left(session["tag"], session["reports"])


def test_last_failed_runs_only_the_failure_and_leaves_nothing(pytester: pytest.Pytester,
                                                              session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next")
    session["nb"]("a.ipynb")
    session["nb"]("b.ipynb", ["assert False, 'b fails'"])
    session["nb"]("c.ipynb")
    first = run_pytest(pytester, "--nbtest")
    first.assert_outcomes(passed=2, failed=1)
    assert_nothing_left(session["tag"], session["reports"])
    for path in session["reports"].iterdir():
        path.unlink()
    again = run_pytest(pytester, "--nbtest", "--lf")
    again.assert_outcomes(failed=1)
    assert session["report"]("a") is None and session["report"]("c") is None
    assert session["report"]("b")["siblings"] == []
    assert_nothing_left(session["tag"], session["reports"])
