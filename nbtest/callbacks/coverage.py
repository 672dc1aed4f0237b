"""Coverage of the code that notebooks run inside their kernels (`--nbtest-cov`).

It uses coverage.py's own subprocess support: before a kernel starts, the configuration of the
measurement running in this process (pytest-cov's, `coverage run`'s, or the one coverage
started in an xdist worker) goes into the kernel's environment as COVERAGE_PROCESS_CONFIG, and
coverage's start-up hook (the `.pth` file it installs) measures the kernel from its first line
into a parallel data file beside the session's, which pytest-cov (or `coverage combine`)
merges. Kernels are normally SIGKILLed, which loses that data; so the kernel's coverage is
told to save on SIGTERM, and the kernel gets SIGTERM and a grace period before the kill.
"""

from __future__ import annotations

import copy
import glob
import os
import site
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..callback import Callback, NotebookRun
from ..errors import NbTestError

if TYPE_CHECKING:
    import pytest

GRACE = 10.0  # seconds a kernel has, after SIGTERM, to write its coverage data
MIN_COVERAGE = (7, 10, 6)  # whole configuration passed to subprocesses (and pytest-cov 7's floor)
CONFIG_VAR = "COVERAGE_PROCESS_CONFIG"
START_VAR = "COVERAGE_PROCESS_START"
DATA_PREFIX = ":data:"  # coverage reads a config_file of this form as serialized data


class KernelCoverage(Callback):
    """Makes each kernel measure coverage like the session does, and stop gently to save it."""

    def __init__(self, pytest_config: pytest.Config | None = None, grace: float = GRACE) -> None:
        try:
            import coverage
        except ImportError:
            raise NbTestError("--nbtest-cov needs coverage.py: pip install pytest-cov") from None
        if coverage.version_info < MIN_COVERAGE:
            need = ".".join(map(str, MIN_COVERAGE))
            raise NbTestError(f"--nbtest-cov needs coverage>={need} (coverage "
                              f"{coverage.__version__} is installed): pip install -U coverage")
        self.pytest_config = pytest_config
        self.grace = grace
        self._warned: set[str] = set()

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Put the session's coverage configuration in the kernel's environment."""
        serialized = self.kernel_config()
        if serialized is None:
            return
        run.kernel_env[CONFIG_VAR] = serialized
        # Also as COVERAGE_PROCESS_START (coverage reads a `:data:` value as the config): a
        # kernel that starts coverage must be a fresh interpreter, since the hook runs at
        # start-up, and the fork template spawns rather than forks kernels that set this.
        run.kernel_env[START_VAR] = DATA_PREFIX + serialized
        run.stop_grace = max(run.stop_grace, self.grace)
        if not _startup_hook_installed():
            self._warn_once("no-hook", "--nbtest-cov: coverage's start-up .pth file is not in "
                            "this interpreter's site-packages, so kernels will not start "
                            "coverage; set `patch = subprocess` in coverage's [run] settings")

    def kernel_config(self) -> str | None:
        """The active measurement's settings for a kernel (serialized), or None if none runs."""
        cov, topdir = self._active()
        if cov is None:
            self._warn_once("inactive", "--nbtest-cov: no coverage measurement is running "
                            "(add --cov=PACKAGE, or run under `coverage run`): notebook kernels "
                            "are not measured")
            return None
        config = copy.deepcopy(cov.config)
        # The kernel runs in the notebook's folder, so every relative path must be made
        # absolute against the folder the measurement started in, not the kernel's.
        data = getattr(cov, "_data", None)  # its file name was made absolute at start
        base = data.base_filename() if data is not None else config.data_file
        config.data_file = os.path.join(topdir, base)
        config.source = [_absolute_if_exists(topdir, s) for s in config.source or ()] or None
        config.source_dirs = [os.path.join(topdir, d) for d in config.source_dirs or ()]
        config.run_include = _absolute_patterns(topdir, config.run_include)
        config.run_omit = _absolute_patterns(topdir, config.run_omit)
        config.parallel = True  # one data file per kernel, merged by the combine step
        config.sigterm = True  # save on the SIGTERM that starts the kernel's grace period
        return str(config.serialize())

    def _active(self) -> tuple[Any, str]:
        """The Coverage object measuring this process, and the folder it started in."""
        import coverage

        if self.pytest_config is not None:
            plugin = self.pytest_config.pluginmanager.getplugin("_cov")
            controller = getattr(plugin, "cov_controller", None)
            # After the run, pytest-cov swaps in an unstarted object to combine: not that one.
            if controller is not None and getattr(controller, "started", True):
                if controller.cov is not None:
                    return controller.cov, str(controller.topdir)
        return coverage.Coverage.current(), os.getcwd()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def _absolute_if_exists(topdir: str, source: str) -> str:
    """A source directory made absolute; a module name (no such folder) is kept as is."""
    path = os.path.join(topdir, source)
    return path if os.path.exists(path) else source


def _absolute_patterns(topdir: str, patterns: list[str] | None) -> list[str]:
    """Include/omit patterns as coverage prepares them, but against `topdir`, not the cwd."""
    prepared = []
    for pattern in patterns or ():
        prepared.append(pattern)
        if not pattern.startswith(("*", "?")):
            prepared.append(os.path.join(topdir, pattern))
    return prepared


@lru_cache(maxsize=1)
def _startup_hook_installed() -> bool:
    """Whether a `.pth` file here calls coverage.process_startup() at interpreter start-up."""
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    for folder in folders:
        for path in glob.glob(os.path.join(folder, "*.pth")):
            try:
                with open(path, encoding="utf-8") as fh:
                    if "process_startup" in fh.read():
                        return True
            except OSError:
                continue
    return False
