"""Preloading: the fork template imports the user's modules, and stays provably safe.

Real pytest sessions (pytester) whose notebooks import modules written beside them; the
template imports them from there (pytester puts its folder on PYTHONPATH, which the template
inherits like any kernel).
"""

from __future__ import annotations

import importlib.util
import json
import re
import textwrap

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.kernel.preload import choose, env_set_before_import, learned, notebook_imports

pytest_plugins = ["pytester"]

PY_THREAD = ("import threading, time\n"
             "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n")
NATIVE_THREAD = textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None)
    tid = ctypes.c_ulong()
    # A thread Python does not know about: sleep(600) as the start routine.
    libc.pthread_create(ctypes.byref(tid), None, ctypes.cast(libc.sleep, ctypes.c_void_p),
                        ctypes.c_void_p(600))
    """)
FAKE_CUDA = textwrap.dedent("""
    import sys, types
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_initialized=lambda: True)
    sys.modules["torch"] = torch
    """)
RANDOM = "import numpy, random\nprint(numpy.random.rand(), random.random())"


def starts(result: pytest.RunResult) -> list[str]:
    """How each notebook's kernel started, from `-v`."""
    return re.findall(r"PASSED \(kernel: ([^)]+)\)", output(result))


@pytest.mark.parametrize(("module", "culprit"), [
    (PY_THREAD, "it started 1 Python thread"),
    (NATIVE_THREAD, "it started 1 native thread"),
    (FAKE_CUDA, "it initialised CUDA"),
], ids=["python-thread", "native-thread", "cuda"])
def test_an_unsafe_module_is_dropped_named_and_the_rest_still_forks(
        pytester: pytest.Pytester, module: str, culprit: str, no_kernel_left) -> None:
    this_tests("nbtest.inkernel.preload.preload_modules", "nbtest.inkernel.preload.fork_problems",
               "nbtest.kernel.forkserver_client.ForkServer.preload_status")
    (pytester.path / "culprit.py").write_text(module)
    (pytester.path / "harmless.py").write_text("VALUE = 42\n")
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb",
                       ["import harmless, sys\nassert harmless.VALUE == 42",
                        "assert 'culprit' not in sys.modules"])
    result = run_pytest(pytester, "--nbtest", "-v", "--nbtest-preload", "culprit,harmless",
                        "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == 0, text
    assert f"nbtest: preload: dropped culprit: {culprit}" in text
    assert starts(result) == ["fork", "fork"]
    no_kernel_left()


def test_a_module_that_fails_to_import_is_reported_once_and_skipped(
        pytester: pytest.Pytester) -> None:
    this_tests("nbtest.kernel.preload.report_lines")
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb", ["import json"])
    result = run_pytest(pytester, "--nbtest", "-v", "--nbtest-preload", "json,no_such_mod_x",
                        "-p", "no:cacheprovider")
    assert result.ret == 0
    assert output(result).count("preload: skipped no_such_mod_x (ModuleNotFoundError") == 1
    assert starts(result) == ["fork", "fork"]


def test_fresh_random_state_per_kernel_and_the_seed_equalises(pytester: pytest.Pytester
                                                               ) -> None:
    this_tests("nbtest.inkernel.preload.after_fork")
    pytest.importorskip("numpy")
    for name in ("a", "b", "c"):
        write_notebook(pytester.path / f"{name}.ipynb", [RANDOM])
    draws = []
    for seed in ([], ["--nbtest-seed", "3"]):
        result = run_pytest(pytester, "--nbtest", "-v", "--nbtest-preload", "numpy",
                            "--nbtest-save-failed", "saved", *seed, "-p", "no:cacheprovider",
                            "-o", "nbtest_update_outputs=false", "--junitxml=j.xml")
        assert starts(result) == ["fork"] * 3, output(result)
        draws.append(_printed(pytester))
    unseeded, seeded = draws
    assert len(set(unseeded)) == 3  # numpy's global RandomState differs per kernel
    assert len(set(seeded)) == 1  # --nbtest-seed still makes them equal


def _printed(pytester: pytest.Pytester) -> list[str]:
    """What each notebook's cell printed, from the executed copies a run leaves (saved by a
    conftest hook into out/)."""
    return [p.read_text() for p in sorted((pytester.path / "out").glob("*.txt"))]


@pytest.fixture(autouse=True)
def _keep_outputs(pytester: pytest.Pytester) -> None:
    """Each notebook's printed text into out/NAME.txt (the tests read the kernels' draws)."""
    pytester.makeconftest("""
        import pathlib

        def pytest_nbtest_notebook_done(item, run, result):
            out = pathlib.Path(str(item.config.rootpath)) / "out"
            out.mkdir(exist_ok=True)
            text = "".join(c.output_tail for c in result.cells)
            (out / (item.path.stem + ".txt")).write_text(text)
        """)


LIB_V1 = "VALUE = 1\n\nclass Thing:\n    kind = 'old'\n"
LIB_V2 = "VALUE = 2\n\nclass Thing:\n    kind = 'new'\n"
REWRITE = ("import pathlib, os, time\n"
           "pathlib.Path('mylib.py').write_text({text!r})\n"
           "os.utime('mylib.py', (time.time() + {later}, time.time() + {later}))")
SAME_OBJECTS = ("import mylib, helper, os\nassert helper.Thing is mylib.Thing\n"
                "assert (mylib.VALUE, helper.Thing.kind) == (2, 'new')\nprint(os.getppid())")


def test_a_rewritten_preloaded_module_never_changes_a_verdict(pytester: pytest.Pytester) -> None:
    """Notebook a rewrites a preloaded module (new content), b rewrites it again with the same
    content: b and c see only the new module, everywhere (helper's `from mylib import Thing`
    too), as without preload; the same content rebuilds nothing (c forks from b's template)."""
    this_tests("nbtest.kernel.freshness.changed_files", "nbtest.kernel.freshness.rebuild",
               "nbtest.kernel.forked.ForkedProcess.stale")
    verdicts = []
    for how in (["--nbtest-preload", "mylib,helper"], ["--nbtest-fork", "no"]):
        (pytester.path / "mylib.py").write_text(LIB_V1)
        (pytester.path / "helper.py").write_text("from mylib import Thing\n")
        write_notebook(pytester.path / "a.ipynb", ["import mylib, helper",
                                                   REWRITE.format(text=LIB_V2, later=5)])
        write_notebook(pytester.path / "b.ipynb", [SAME_OBJECTS,
                                                   REWRITE.format(text=LIB_V2, later=10)])
        write_notebook(pytester.path / "c.ipynb", [SAME_OBJECTS])
        result = run_pytest(pytester, "--nbtest", "-v", *how, "-p", "no:cacheprovider")
        verdicts.append((result.ret, result.parseoutcomes()))
        if how[0] == "--nbtest-preload":
            assert starts(result) == ["fork"] * 3, output(result)
            b_parent, c_parent = _printed(pytester)[1:]
            assert b_parent == c_parent  # same content: no new template
    with_preload, without = verdicts
    assert without == (0, {"passed": 3})
    assert with_preload == without


def test_setting_the_environment_before_a_preloaded_import_spawns(
        pytester: pytest.Pytester) -> None:
    this_tests("nbtest.kernel.preload.env_set_before_import")
    (pytester.path / "envlib.py").write_text("import os\nSEEN = os.environ.get('ENVLIB')\n")
    write_notebook(pytester.path / "a.ipynb", ["import envlib\nassert envlib.SEEN is None"])
    write_notebook(pytester.path / "b.ipynb", ["import os\nos.environ['ENVLIB'] = 'x'",
                                               "import envlib\nassert envlib.SEEN == 'x'"])
    result = run_pytest(pytester, "--nbtest", "-v", "--nbtest-preload", "envlib",
                        "-p", "no:cacheprovider")
    assert result.ret == 0, output(result)
    assert starts(result) == ["fork", "spawn, the notebook sets environment variables before "
                                      "importing envlib, which the template preloaded"]


def test_auto_learns_from_the_notebooks(pytester: pytest.Pytester) -> None:
    """`preload = "auto"`: the modules most notebooks import, kept in pytest's cache for the
    next session (xdist's controller starts the template before any collection)."""
    this_tests("nbtest.kernel.preload.learned", "nbtest.plugin.fork_template.remember_imports")
    pytester.makepyprojecttoml('[tool.nbtest]\npreload = "auto"\n')
    (pytester.path / "common.py").write_text("X = 1\n")
    for name in ("a", "b", "c"):
        write_notebook(pytester.path / f"{name}.ipynb", ["import common, json"])
    write_notebook(pytester.path / "d.ipynb", ["import decimal"])
    first = run_pytest(pytester, "--nbtest", "-v")
    assert first.ret == 0 and set(starts(first)) == {"fork"}
    cached = json.loads((pytester.path / ".pytest_cache/v/nbtest/preload").read_text())
    assert learned(cached) == ["common", "json"]
    second = run_pytest(pytester, "--nbtest", "-v", "-n", "2")
    assert second.ret == 0 and set(starts(second)) == {"fork"}, output(second)


def test_preload_choice_and_env_rules() -> None:
    this_tests(choose, env_set_before_import, notebook_imports)
    record = {"imports": {"a": ["numpy", "torch"], "b": ["numpy"], "c": ["numpy", "torch"],
                          "d": ["pandas"]}, "unsafe": ["torch"]}
    assert choose((), record) == []
    assert choose(("x", "y"), record) == ["x", "y"]
    assert choose("auto", record) == ["numpy"]  # torch was found unsafe
    assert choose("auto", {}, {"a": ["m"], "b": ["m"]}) == ["m"]
    # Learned from kernels: heavy roots first, each package by its entries; never nbtest's
    # own or unsafe modules, nor what is cheap or loaded by too few notebooks.
    loaded = {"torch": [2.0, "lib.basics"], "torch.nn": [0.5, "torch"], "lib": [0.01, None],
              "lib.basics": [0.3, None], "IPython.x": [1.0, None], "bad": [1.0, None],
              "tiny": [0.001, None]}
    kernels = {"a": loaded, "b": {**loaded, "rare": [9.0, None]}, "c": {}, "d": {}}
    assert choose("auto", {"unsafe": ["bad"]}, None, kernels) == ["torch", "lib", "lib.basics"]
    assert notebook_imports(["import a.b, c\nfrom d.e import f", "%time import g",
                             "from . import h"]) == ["a.b", "c", "d.e"]
    assert env_set_before_import(["import torch", "import os\nos.environ['X'] = '1'"],
                                 ["torch"]) is None
    assert env_set_before_import(["%env OMP_NUM_THREADS=1", "import torch"], ["torch"])
    assert env_set_before_import(["import os\nos.environ['X']='1'\nimport torch"], ["torch"])


def test_execute_preload_forks_from_a_preloaded_template(make_notebook, run_cli) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("one.ipynb", ["import json, sys\nassert 'wave' in sys.modules"])
    cli = run_cli("execute", path, "--no-progress", "--preload", "wave,json")
    assert cli.returncode == 0, cli.stderr
    spawned = run_cli("execute", path, "--no-progress")
    assert spawned.returncode == 1  # a spawned kernel has not imported wave


def test_a_second_openblas_pool_is_not_a_reason_to_drop(pytester: pytest.Pytester) -> None:
    """scipy maps its own OpenBLAS beside numpy's, which starts its own (fork-safe) pool."""
    this_tests("nbtest.inkernel.preload.preload_modules", "nbtest.inkernel.preload.fork_problems")
    # Looked for, not imported: numpy cannot load twice in a process whose in-process
    # pytester sessions dropped it from sys.modules.
    if importlib.util.find_spec("numpy") is None or importlib.util.find_spec("scipy") is None:
        pytest.skip("needs numpy and scipy")
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb",
                       ["import numpy, scipy.linalg\nprint(scipy.linalg.det(numpy.eye(2)))"])
    result = run_pytest(pytester, "--nbtest", "-v", "--nbtest-preload", "numpy,scipy.linalg",
                        "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == 0, text
    assert "dropped" not in text
    assert starts(result) == ["fork", "fork"]


ENV_PROBE = textwrap.dedent("""\
    import builtins, json, os, sys
    try:
        shell = get_ipython()  # noqa: F821 (a builtin in a kernel)
    except NameError:
        shell = None
    SEEN = json.dumps({
        "shell": type(shell).__name__, "kernel_app": "IPKernelApp" in getattr(shell, "config", {}),
        "ipython": getattr(builtins, "__IPYTHON__", False), "ipykernel": "ipykernel" in sys.modules,
        "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:2], len(sys.argv)],
        "displayhook": type(sys.displayhook).__name__,
        "main_file": hasattr(sys.modules["__main__"], "__file__"),
        "mplbackend": os.environ.get("MPLBACKEND"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }, sort_keys=True)
    """)


def test_a_preloaded_module_sees_the_kernel_a_spawned_one_sees(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Libraries decide at import whether they run in a notebook: preloaded in the template,
    a module must see what it sees imported in a spawned kernel's cell. OpenMP reads its wait
    policy when it loads (in the template, for a forked kernel): both see the passive one."""
    this_tests("nbtest.kernel.likeness.kernel_like", "nbtest.kernel.forkserver_main.serve",
               "nbtest.kernel.environment.kernel_environment")
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        monkeypatch.delenv(name, raising=False)
    (pytester.path / "envprobe.py").write_text(ENV_PROBE)
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb", ["import envprobe\nprint(envprobe.SEEN)"])
    seen = []
    for how in (["--nbtest-preload", "envprobe"], ["--nbtest-fork", "no"]):
        result = run_pytest(pytester, "--nbtest", "-v", *how, "-p", "no:cacheprovider")
        assert result.ret == 0, output(result)
        assert set(starts(result)) == {"fork" if how[1] == "envprobe" else "spawn"}
        seen.append(_printed(pytester))
    forked, spawned = seen
    assert json.loads(spawned[0])["shell"] == "ZMQInteractiveShell"
    assert json.loads(spawned[0])["omp_wait_policy"] == "PASSIVE"
    assert forked == spawned


def test_auto_learns_what_kernels_loaded_through_any_entry(pytester: pytest.Pytester) -> None:
    """Notebooks enter a local package through different submodules, each importing a
    costly dependency no notebook names: the next `auto` session preloads both (their
    kernels start with them), and the one after still does (kernels forked from the
    preloaded template did not load them themselves)."""
    this_tests("nbtest.kernel.preload.learned_from_kernels", "nbtest.inkernel.imports.install",
               "nbtest.plugin.fork_template.ImportsCapture.on_notebook_end",
               "nbtest.plugin.fork_template.kernel_imports")
    pytester.makepyprojecttoml('[tool.nbtest]\npreload = "auto"\n')
    (pytester.path / "heavydep.py").write_text("import time\ntime.sleep(0.2)\n")
    package = pytester.path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("import time\ntime.sleep(0.05)\n")
    for name in ("a", "b", "c"):
        (package / f"{name}.py").write_text("import heavydep\nX = 1\n")
    for name, entry in (("n1", "import mypkg.a"), ("n2", "from mypkg.b import X"),
                        ("n3", "import mypkg.c")):
        write_notebook(pytester.path / f"{name}.ipynb", [
            "import sys\nprint('heavydep' in sys.modules, 'mypkg.b' in sys.modules)", entry])
    seen = []
    for session in range(3):
        result = run_pytest(pytester, "--nbtest", "-v")
        assert result.ret == 0, output(result)
        if session:  # a preloaded template is waited for (the first may spawn meanwhile)
            assert set(starts(result)) == {"fork"}, output(result)
        seen.append(_printed(pytester))
    assert seen[0] == ["False False"] * 3  # nothing learned yet: nothing preloaded
    assert seen[1] == seen[2] == ["True True"] * 3
    records = list((pytester.path / ".pytest_cache/d/nbtest-imports").glob("*.json"))
    assert len(records) == 3


def test_auto_times_torch_under_a_seed(pytester: pytest.Pytester) -> None:
    """--nbtest-seed finds torch through its own import hook: it is still timed (here a
    stand-in torch package beside the notebooks)."""
    this_tests("nbtest.inkernel.imports.ImportTimer.find_spec",
               "nbtest.kernel.startup.startup_code")
    pytester.makepyprojecttoml('[tool.nbtest]\npreload = "auto"\n')
    (pytester.path / "torch").mkdir()
    (pytester.path / "torch" / "__init__.py").write_text(
        "SEEDS = []\ndef manual_seed(seed):\n    SEEDS.append(seed)\n")
    for name in ("a", "b"):
        # Not written as an import: the first session preloads nothing (it would be timed
        # in the template then, not in the kernels).
        write_notebook(pytester.path / f"{name}.ipynb",
                       ["torch = __import__('torch')\nassert torch.SEEDS == [3]"])
    result = run_pytest(pytester, "--nbtest", "-v", "--nbtest-seed", "3")
    assert result.ret == 0, output(result)
    records = [json.loads(p.read_text())["modules"]
               for p in (pytester.path / ".pytest_cache/d/nbtest-imports").glob("*.json")]
    assert len(records) == 2 and all("torch" in modules for modules in records), records


def test_auto_keeps_what_the_first_session_preloaded_as_written(
        pytester: pytest.Pytester) -> None:
    """The first session preloads what the notebooks import as written; their kernels never
    load it themselves, so its cost in the template is credited: the next session keeps it."""
    this_tests("nbtest.plugin.fork_template.ImportsCapture.on_notebook_end")
    pytester.makepyprojecttoml('[tool.nbtest]\npreload = "auto"\n')
    (pytester.path / "heavydep.py").write_text("import time\ntime.sleep(0.2)\n")
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb",
                       ["import sys\nprint('heavydep' in sys.modules)", "import heavydep"])
    for _ in range(2):
        result = run_pytest(pytester, "--nbtest", "-v")
        assert result.ret == 0 and set(starts(result)) == {"fork"}, output(result)
        assert _printed(pytester) == ["True"] * 2
