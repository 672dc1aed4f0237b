"""The startup cell's code: `_nbtest_startup(settings_json)` runs silently in each kernel
before the first cell (kernel/startup.py sends its source, with its settings as data).

It imports nothing heavy: numpy only when a seed is asked for, torch never (a seed reaches
torch through an import hook, if and when the notebook imports it), and of nbtest only the
modules of this package each setting needs: recorder when this_tests calls are captured,
tracker_hooks and tracker under --nbtest-affected, imports with `preload = "auto"` or
--nbtest-profile, profiling under --nbtest-profile, gpu_peak when GPU memory is measured.
Its source is sent, not imported, so it names nothing outside its own body (no annotations,
no globals).
"""

from __future__ import annotations


def _nbtest_startup(settings_json: str) -> None:  # runs inside the kernel
    import json
    import os
    import sys

    settings = json.loads(settings_json)
    os.environ["NBTEST"] = "1"
    for folder in reversed(settings.get("sys_path") or ()):  # nbdev: the project's folder
        sys.path.insert(0, folder)
    if sys.platform.startswith("linux"):
        # A subreaper: what a cell starts and orphans (a double-forked daemon, in a new
        # session with a cleared environment) is reparented to the kernel, not to init, so
        # it stays in the kernel's tree and the harness kills it with the kernel.
        try:
            import ctypes

            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass
    if settings.get("imports"):  # preload = "auto": what the notebook imports, and its cost
        try:
            from nbtest.inkernel import imports as kernel_imports
        except ImportError:  # nbtest is not installed beside this kernel: nothing is learned
            pass
        else:
            kernel_imports.install(settings["imports"])
    if settings.get("profile_file"):  # --nbtest-profile: time imports, count outputs
        try:
            from nbtest.inkernel import profiling
        except ImportError:  # nbtest is not installed beside this kernel: no breakdown
            pass
        else:
            profiling.install(settings["profile_file"])
    if settings.get("affected"):  # --nbtest-affected: note what the notebook uses
        try:
            from nbtest.inkernel import tracker_hooks as kernel_tracker
        except ImportError:  # nbtest is not installed beside this kernel: nothing is noted
            pass
        else:
            kernel_tracker.install(settings["affected"])
    if settings.get("registry") or settings.get("api"):
        try:
            from nbtest.inkernel import recorder
        except ImportError:  # nbtest is not installed beside this kernel: nothing can call it
            pass
        else:
            recorder.install(settings.get("registry") or {"api": settings["api"]})
    if settings.get("gpu_peak_file"):
        try:
            from nbtest.inkernel import gpu_peak as kernel_gpu
        except ImportError:  # nbtest is not installed beside this kernel: the driver's figure
            pass
        else:
            kernel_gpu.install(settings["gpu_peak_file"])
    seed = settings.get("seed")
    if seed is None:
        return
    import random

    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
        return

    import importlib.abc

    class SeedTorchOnImport(importlib.abc.MetaPathFinder):
        """Seeds torch right after the notebook imports it, without importing it here."""

        # No annotations here: this runs in the kernel, where `Any` is not imported.
        def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
            if name != "torch":
                return None
            sys.meta_path.remove(self)
            spec = None  # found by the finders after this one (preload = "auto" times it)
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                spec = find(name, path, target) if find is not None else None
                if spec is not None:
                    break
            if spec is None or spec.loader is None:
                return spec
            run_module = spec.loader.exec_module

            def exec_and_seed(module):  # type: ignore[no-untyped-def]
                run_module(module)
                module.manual_seed(seed)

            spec.loader.exec_module = exec_and_seed
            return spec

    sys.meta_path.insert(0, SeedTorchOnImport())
