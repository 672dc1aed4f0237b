"""`nbtest execute` as a user runs it: the real console script in a subprocess, real kernels.

Exit codes 0 / 1 / 2, the report, the executed notebook, timeouts, dying kernels, signals, and
no kernel process (or child of one) left after any of it. Time limits given to subprocesses
are hang guards only.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.extras import NEEDS_NBCONVERT, NEEDS_NUMPY
from helpers.notebooks import cell_text, read_notebook
from helpers.processes import cli_env, pid_gone, wait_for_file

import nbtest
from nbtest import this_tests

NBTEST_SOURCE = str(Path(nbtest.__file__).parent)


def _no_nbtest_traceback(stderr: str) -> None:
    """No traceback through nbtest's own code reached the user."""
    assert f'File "{NBTEST_SOURCE}' not in stderr, stderr
    assert "Traceback (most recent call last):\n  File" not in stderr, stderr


def test_passing_notebook_exits_0_and_writes_the_default_output(
        make_notebook, run_cli, tmp_path: Path, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.cli.output_path")
    path = make_notebook("nb dir/nb.ipynb", [
        ("markdown", "# A notebook"),
        "import os\nprint(os.environ['NBTEST'], os.getcwd())",
        "x = 41",
        ("markdown", "the answer"),
        "x + 1",
    ])
    before = path.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("execute", path, cwd=elsewhere)  # no --no-progress: stderr is no terminal
    assert proc.returncode == 0, proc.stderr
    out = path.with_name("nb.executed.ipynb")
    assert out.exists() and path.read_bytes() == before
    nb = read_notebook(out)
    assert len(nb.cells) == 5
    assert [c.get("execution_count") for c in nb.cells if c.cell_type == "code"] == [1, 2, 3]
    assert cell_text(nb.cells[1]) == f"1 {path.parent}\n"  # NBTEST=1, the notebook's folder
    assert cell_text(nb.cells[4]) == "42\n"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"nbtest: passed {path} in ")
    assert lines[0].endswith(" s (3 cells run)")
    slowest = [line for line in lines if line.startswith("  slowest: ")]
    assert len(slowest) == 1
    assert re.match(r"  slowest: cell \d \d+\.\d\ds(, cell \d \d+\.\d\ds){2}$", slowest[0])
    assert f"  wrote {out}" in lines
    assert "\r" not in proc.stderr and "cell/s" not in proc.stderr  # no progress bar
    assert proc.stdout == ""
    assert not list(elsewhere.iterdir())
    no_kernel_left()


def test_failing_notebook_exits_1_reports_the_cell_and_still_writes(
        make_notebook, run_cli, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.failure_text.failure_text")
    path = make_notebook("fails.ipynb", [
        ("markdown", "intro"),
        "a = 1",
        "print('working on it')\nassert a == 2, 'sum is 42'\nprint('unreached')",
        "b = 2",
    ])
    before = path.read_bytes()
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 1, proc.stderr
    _no_nbtest_traceback(proc.stderr)
    report = proc.stderr.split("\n\n", 1)[1]
    assert report.splitlines()[0] == "cell 3: AssertionError: sum is 42"
    assert "-->   2 | assert a == 2, 'sum is 42'" in report
    assert "working on it" in report
    assert "\x1b[" not in proc.stderr
    assert proc.stderr.startswith(f"nbtest: failed {path} in ")
    assert path.read_bytes() == before
    nb = read_notebook(path.with_name("fails.executed.ipynb"))
    assert len(nb.cells) == 4
    errors = [o for o in nb.cells[2].outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "AssertionError" and errors[0].evalue == "sum is 42"
    assert nb.cells[3].get("execution_count") is None
    no_kernel_left()


def test_metadata_timeout_of_3_s_is_reported_promptly(make_notebook, run_cli, tmp_path: Path,
                                                      no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("slow.ipynb", [
        "x = 1",
        "import time\ntime.sleep(600)",
        "y = 2",
    ], metadata={"nbtest": {"timeout": 3}})
    t0 = time.monotonic()
    proc = run_cli("execute", path, "--no-progress", timeout=30)  # hang guard
    elapsed = time.monotonic() - t0
    print(f"3 s metadata timeout: nbtest execute returned after {elapsed:.2f} s")
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"^cell 2: timed out after 3\.\d s \(limit 3 s\)$", proc.stderr, re.M), \
        proc.stderr
    nb = read_notebook(tmp_path / "slow.executed.ipynb")
    assert len(nb.cells) == 3 and nb.cells[2].get("execution_count") is None
    no_kernel_left()


def test_cell_ignoring_sigint_still_times_out(make_notebook, run_cli, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("spin.ipynb", [
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    ])
    t0 = time.monotonic()
    proc = run_cli("execute", path, "--no-progress", "--timeout", "2", timeout=30)
    print(f"SIGINT-ignoring spinner (2 s limit): returned after {time.monotonic() - t0:.2f} s")
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"^cell 1: timed out after 2\.\d s \(limit 2 s\)$", proc.stderr, re.M)
    no_kernel_left()


def test_timed_out_cell_leaves_no_child(make_notebook, run_cli, tmp_path: Path,
                                        no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.kernel.launch.Kernel.kill")
    path = make_notebook("child.ipynb", [
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "time.sleep(600)",
    ])
    proc = run_cli("execute", path, "--no-progress", "--timeout", "2", timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert "cell 1: timed out after" in proc.stderr
    child = int((tmp_path / "child.pid").read_text())
    assert pid_gone(child), f"sleep 600 (pid {child}) survived the timeout"
    no_kernel_left()


def test_timed_out_cell_leaves_no_child_in_a_new_session(make_notebook, run_cli, tmp_path: Path,
                                                         no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.kernel.launch.Kernel.kill",
               "nbtest.kernel.tree.processes_with_token")
    # Out of the kernel's process group: only the token sweep can find these.
    path = make_notebook("daemon.ipynb", [
        "import subprocess, time\n"
        "away = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "open('away.pid', 'w').write(str(away.pid))\n"
        "subprocess.run(['sh', '-c', 'sleep 600 & echo $! > orphan.pid'], "
        "start_new_session=True)\n"
        "time.sleep(600)",
    ])
    proc = run_cli("execute", path, "--no-progress", "--timeout", "2", timeout=30)
    assert proc.returncode == 1, proc.stderr
    away = int((tmp_path / "away.pid").read_text())
    orphan = int((tmp_path / "orphan.pid").read_text())
    assert pid_gone(away), f"new-session child (pid {away}) survived"
    assert pid_gone(orphan), f"orphaned grandchild (pid {orphan}) survived"
    no_kernel_left()


@pytest.mark.parametrize(("code", "detail"), [
    ("import os\nos._exit(3)", "kernel died (exit code 3)"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
     "kernel died (killed by SIGKILL, which looks like the memory limit or the OOM killer"),
], ids=["exit-code", "sigkill"])
def test_dying_kernel_is_reported_with_exit_code_or_signal(
        make_notebook, run_cli, tmp_path: Path, no_kernel_left, code: str, detail: str) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.kernel.notebook_kernel.describe_exit")
    path = make_notebook("dies.ipynb", [("markdown", "# dies"), "x = 1", code, "y = 2"])
    t0 = time.monotonic()
    proc = run_cli("execute", path, "--no-progress", timeout=20)  # hang guard
    print(f"{detail}: nbtest execute returned after {time.monotonic() - t0:.2f} s")
    assert proc.returncode == 1, proc.stderr
    _no_nbtest_traceback(proc.stderr)
    assert re.search(rf"^cell 3: {re.escape(detail)}.*$", proc.stderr, re.M), proc.stderr
    nb = read_notebook(tmp_path / "dies.executed.ipynb")
    assert len(nb.cells) == 4 and nb.cells[3].get("execution_count") is None
    no_kernel_left()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_cell_shuts_the_kernel_down(make_notebook, start_cli, tmp_path: Path,
                                               no_kernel_left, signum: int) -> None:
    this_tests("nbtest.cli.main", "nbtest.cli.cmd_execute", "nbtest.kernel.launch.Kernel.kill")
    path = make_notebook("long.ipynb", [
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "open('started', 'w').write(str(child.pid))\n"
        "time.sleep(600)",
    ])
    proc = start_cli("execute", path, "--no-progress")
    child = int(wait_for_file(tmp_path / "started", proc=proc))
    t0 = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)  # hang guard
    print(f"{signal.Signals(signum).name}: nbtest exited after {time.monotonic() - t0:.2f} s")
    assert proc.returncode != 0
    assert "interrupted" in err and "kernel was shut down" in err
    _no_nbtest_traceback(err)
    assert pid_gone(child), "the running cell's child survived"
    no_kernel_left()


def test_unicode_spaces_and_quotes_in_names(make_notebook, run_cli, tmp_path: Path,
                                            no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.cli.output_path")
    path = make_notebook("dïr with space/tëst 'q' \"d\".ipynb", [
        "import os\nprint('ünïcode ✓', os.path.basename(os.getcwd()))",
    ])
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = path.with_name("tëst 'q' \"d\".executed.ipynb")
    assert cell_text(read_notebook(out).cells[0]) == "ünïcode ✓ dïr with space\n"
    assert str(out) in proc.stderr
    no_kernel_left()


PEAK_RSS = """
import resource, sys
from nbtest.cli import main
rc = main(["execute", sys.argv[1], "--no-progress", "-o", sys.argv[2]])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
sys.exit(rc)
"""


def test_20_mb_output_keeps_the_harness_memory_sane(make_notebook, tmp_path: Path,
                                                     no_kernel_left) -> None:
    this_tests("nbtest.cli.main", "nbtest.cli.cmd_execute")
    path = make_notebook("big.ipynb", ["print('x' * 20_000_000)", "print('done')"])
    out = tmp_path / "big.out.ipynb"
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path), str(out)],
                          capture_output=True, text=True, timeout=180, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split()[-1]) / 1024
    print(f"harness peak RSS with a 20 MB output: {peak_mb:.0f} MiB")
    assert peak_mb < 600
    nb = read_notebook(out)
    assert len(cell_text(nb.cells[0])) == 20_000_001
    assert cell_text(nb.cells[1]) == "done\n"
    no_kernel_left()


def test_inplace_overwrites_only_when_asked(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.cli.output_path")
    path = make_notebook("in.ipynb", ["print('hello')"])
    proc = run_cli("execute", path, "-o", path, "--no-progress")
    assert proc.returncode == 2 and "--inplace" in proc.stderr
    proc = run_cli("execute", path, "-o", "x.ipynb", "--inplace")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr
    _no_nbtest_traceback(proc.stderr)
    assert read_notebook(path).cells[0].outputs == []
    proc = run_cli("execute", path, "--inplace", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    nb = read_notebook(path)
    assert cell_text(nb.cells[0]) == "hello\n" and nb.cells[0].execution_count == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ipynb"]


CALLBACK_MODULE = '''
import json, os
from nbtest import Callback

class Recorder(Callback):
    """Writes every event it receives to $RECORDER_LOG."""

    def __init__(self):
        self.events = []

    def on_notebook_start(self, run):
        self.events.append(["notebook_start", run.cells_to_run, run.kernel_pid is not None])

    def on_cell_start(self, run, number, source):
        self.events.append(["cell_start", number])

    def on_cell_end(self, run, result):
        self.events.append(["cell_end", result.number, result.status])

    def on_notebook_end(self, run, result):
        self.events.append(["notebook_end", result.status])
        with open(os.environ["RECORDER_LOG"], "w") as fh:
            json.dump(self.events, fh)
'''


@NEEDS_NBCONVERT
def test_output_elsewhere_html_and_callback(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.cli.output_path", "nbtest.outputs.html.write_html",
               "nbtest.callback.load_callback")
    (tmp_path / "cbmods").mkdir()
    (tmp_path / "cbmods" / "recorder_cb.py").write_text(CALLBACK_MODULE)
    path = make_notebook("nb.ipynb", [("markdown", "# doc"), "x = 1", "print(x + 1)"])
    out = tmp_path / "results" / "deep" / "run.ipynb"
    log = tmp_path / "events.json"
    proc = run_cli("execute", path, "-o", out, "--html", "--no-progress",
                   "--callback", "recorder_cb:Recorder",
                   env={"PYTHONPATH": str(tmp_path / "cbmods"), "RECORDER_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert cell_text(read_notebook(out).cells[2]) == "2\n"
    html = out.with_suffix(".html")
    page = html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    assert ">doc<" in page and "<pre>2\n</pre>" in page  # the markdown heading, the output
    assert f"wrote {out} and {html}" in proc.stderr
    assert not path.with_name("nb.executed.ipynb").exists()
    assert json.loads(log.read_text()) == [
        ["notebook_start", 2, True],
        ["cell_start", 2], ["cell_end", 2, "passed"],
        ["cell_start", 3], ["cell_end", 3, "passed"],
        ["notebook_end", "passed"],
    ]


def test_cwd_option_overrides_the_notebook_folder(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute")
    data = tmp_path / "data dir"
    data.mkdir()
    (data / "input.txt").write_text("from the data folder")
    path = make_notebook("nbs/read.ipynb", [
        "import os\nprint(os.getcwd())\nprint(open('input.txt').read())",
    ])
    proc = run_cli("execute", path, "--cwd", data, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    text = cell_text(read_notebook(path.with_name("read.executed.ipynb")).cells[0])
    assert text == f"{data}\nfrom the data folder\n"


def test_timeout_precedence_flag_metadata_pyproject(make_notebook, run_cli, tmp_path: Path,
                                                    no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.config.NbTestConfig",
               "nbtest.config.project_layer")
    (tmp_path / "pyproject.toml").write_text("[tool.nbtest]\ntimeout = 1\n")
    path = make_notebook("t.ipynb", ["import time\ntime.sleep(600)"],
                         metadata={"nbtest": {"timeout": 2}})
    proc = run_cli("execute", path, "--no-progress", timeout=30)
    assert proc.returncode == 1
    assert re.search(r"^cell 1: timed out after 2\.\d s \(limit 2 s\)$", proc.stderr, re.M)
    proc = run_cli("execute", path, "--no-progress", "--timeout", "1.5", timeout=30)
    assert proc.returncode == 1
    assert re.search(r"^cell 1: timed out after 1\.\d s \(limit 1\.5 s\)$", proc.stderr, re.M)
    no_kernel_left()


def test_notebook_timeout_flag(make_notebook, run_cli, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("budget.ipynb", ["import time\ntime.sleep(0.2)", "time.sleep(600)"])
    proc = run_cli("execute", path, "--no-progress", "--notebook-timeout", "5", timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"^cell 2: timed out after \d+\.\d s \(limit \d+(\.\d+)? s, "
                     r"notebook limit 5 s\)$", proc.stderr, re.M), proc.stderr
    no_kernel_left()


def test_allow_errors_flag(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("errs.ipynb", ["1 / 0", "print('after')"])
    proc = run_cli("execute", path, "--allow-errors", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    nb = read_notebook(tmp_path / "errs.executed.ipynb")
    assert nb.cells[0].outputs[0].ename == "ZeroDivisionError"
    assert cell_text(nb.cells[1]) == "after\n"


@NEEDS_NUMPY
def test_seed_flag_reaches_the_kernel(make_notebook, run_cli) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.kernel.startup.startup_code")
    path = make_notebook("seed.ipynb", [
        "import random\nimport numpy\nfirst = (random.random(), float(numpy.random.rand()))",
        "random.seed(99)\nnumpy.random.seed(99)\n"
        "assert first == (random.random(), float(numpy.random.rand())), first",
    ])
    proc = run_cli("execute", path, "--seed", "99", "--no-progress")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["execute", "{nb}", "--kernel", "no-such-kernel"], "installed: "),
    (["execute", "{nb}", "--timeout", "soon"], "command line: bad value 'soon' for 'timeout'"),
    (["execute", "{nb}", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["execute"], "the following arguments are required: notebook"),
    ([], "the following arguments are required: command"),
    (["execute", "{nb}", "-p", "only_name"], "expected 2 arguments"),
    (["execute", "{nb}", "--callback", "no_such_module_x:Cb"], "cannot load it"),
    (["execute", "{nb}", "-f", "missing.yaml"], "cannot read parameters"),
])
def test_usage_errors_exit_2_without_traceback(make_notebook, run_cli, tmp_path: Path,
                                                args: list[str], says: str) -> None:
    this_tests("nbtest.cli.main", "nbtest.cli.build_parser", "nbtest.cli.cmd_execute")
    path = make_notebook("nb.ipynb", ["x = 1"])
    proc = run_cli(*[a.replace("{nb}", str(path)) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("nbtest: ") and says in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one paragraph, here one line
    if "--kernel" in args:
        assert "python3" in proc.stderr
    assert not path.with_name("nb.executed.ipynb").exists()


def test_bad_configuration_names_its_source(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.config.parse_layer", "nbtest.config.project_layer")
    path = make_notebook("meta.ipynb", ["x = 1"], metadata={"nbtest": {"timeout": "soon"}})
    proc = run_cli("execute", path)
    assert proc.returncode == 2
    assert f"{path}: metadata.nbtest: bad value 'soon' for 'timeout'" in proc.stderr
    (tmp_path / "pyproject.toml").write_text('[tool.nbtest]\nseed = "abc"\n')
    proc = run_cli("execute", make_notebook("ok.ipynb", ["x = 1"]))
    assert proc.returncode == 2
    assert "pyproject.toml [tool.nbtest]: bad value 'abc' for 'seed'" in proc.stderr
    assert "Traceback" not in proc.stderr
