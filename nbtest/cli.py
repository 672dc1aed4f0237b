"""The `nbtest` command: execute, run, preflight, registry, affected.

Exit codes: 0 passed; 1 the notebook failed; 2 usage error or unreadable input; 3 the GPU
preflight refused; 4 the notebook ran (and did not fail) but its executed copy could not be
written; 141 stdout was closed (`nbtest affected | head -3`), quietly. Expected errors print
one paragraph, never a traceback of nbtest's code.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .callback import Callback, load_callback
from .config import CLI, NbTestConfig, options_for, parse_layer, project_layer
from .errors import NbTestError, UsageError
from .files import check_writable, why, write_atomic
from .outputs.html import html_exporter, write_html
from .results import NB_FAILED, CellTimings, MemoryFigures, Profile, ThisTestsCapture

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PREFLIGHT, EXIT_UNWRITTEN = 0, 1, 2, 3, 4
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer killed by SIGPIPE
EXIT_CODES = ("exit codes: 0 passed, 1 the notebook failed, 2 usage error or unreadable "
              "notebook, 3 the GPU preflight refused, 4 ran but the executed copy could not "
              "be written")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code is 2 as well
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; `execute`'s flags come from the option table."""
    parser = _Parser(prog="nbtest", description="Run Jupyter notebooks as tests.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    execute = commands.add_parser("execute", help="run one notebook and write the executed copy",
                                  epilog=EXIT_CODES)
    execute.add_argument("notebook", help="the .ipynb file to run")
    out = execute.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", help="where to write the executed notebook "
                     "(default: <stem>.executed.ipynb beside the input)")
    out.add_argument("--inplace", action="store_true", help="overwrite the input notebook")
    execute.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                         metavar=("NAME", "VALUE"), help="a parameter, typed as papermill's -p")
    execute.add_argument("-f", "--parameters-file", help="parameters from a YAML or JSON file")
    for option in options_for(CLI):
        if option.cli_flag and option.name != "parameters":
            kwargs: dict[str, Any] = ({"action": "store_const", "const": True}
                                      if option.is_flag else {"metavar": option.name.upper()})
            execute.add_argument(option.cli_flag, dest=f"opt_{option.name}", help=option.help,
                                 **kwargs)
    execute.add_argument("--html", action="store_true", help="also write an HTML copy")
    execute.add_argument("--prepare-only", action="store_true",
                         help="write the parameterised notebook without running it "
                              "(papermill's --prepare-only)")
    execute.add_argument("--no-progress", action="store_true", help="no progress bar")
    execute.add_argument("--callback", action="append", default=[], metavar="MODULE:NAME",
                         help="a Callback class (or instance) to attach; repeatable")
    execute.add_argument("--registry", action="store_true",
                         help="record the notebook's this_tests calls in [tool.nbtest] registry")
    run = commands.add_parser("run", help="run the docs notebooks matching the globs, via pytest")
    run.add_argument("patterns", nargs="*", metavar="GLOB|PATH",
                     help="notebook globs under --root, or paths (default: all of --root)")
    run.add_argument("--root", help="folder of the notebooks (default: [tool.nbtest] docs_root)")
    run.add_argument("--affected", action="store_true",
                     help="only the notebooks changed since their last pass (--nbtest-affected)")
    from .affected import cmd as affected_cmd
    from .gpu import cmd as preflight_cmd
    from .registry import cmd as registry_cmd

    registry_cmd.add_parser(commands)
    preflight_cmd.add_parser(commands)
    affected_cmd.add_parser(commands)
    return parser


def select_notebooks(patterns: Sequence[str], root: Path) -> list[Path]:
    """Existing paths as given (a shell expanded them), else globs under `root`; never empty."""
    from .notebook import NEVER_COLLECTED

    def collectable(path: Path) -> bool:
        return (path.suffix == ".ipynb" and not path.name.endswith(".executed.ipynb")
                and not NEVER_COLLECTED.intersection(path.parts) and path.is_file())

    if not patterns:
        if not root.is_dir():
            raise UsageError(f"no notebook folder {root}: give --root DIR or set "
                             "[tool.nbtest] docs_root")
        return [root]
    selected: list[Path] = []
    for pattern in patterns:
        given = Path(pattern)
        if given.is_dir() or (given.exists() and collectable(given)):
            selected.append(given)
            continue
        if given.exists():
            continue  # a name the shell expanded that is no notebook test (`*.executed.ipynb`)
        matches = sorted(p for p in root.glob(pattern) if collectable(p))
        if not matches and not pattern.endswith(".ipynb"):
            matches = sorted(p for p in root.glob(pattern + ".ipynb") if collectable(p))
        if not matches:
            raise UsageError(f"{pattern!r} matches no notebook under {root}")
        selected += matches
    if not selected:
        raise UsageError(f"no notebook among {' '.join(patterns)}")
    return list(dict.fromkeys(selected))


def cmd_run(args: argparse.Namespace, pytest_args: Sequence[str]) -> int:
    """`nbtest run`: select notebooks and hand them to pytest; the exit code is pytest's."""
    import pytest

    root = Path(args.root or NbTestConfig(project=project_layer(Path.cwd())).docs_root)
    selected = select_notebooks(args.patterns, root)
    affected = ["--nbtest-affected"] if args.affected else []
    return int(pytest.main(["--nbtest", *affected, *map(str, selected), *pytest_args]))


def _explicit_options(args: argparse.Namespace) -> dict[str, Any]:
    from .params import parse_value, read_parameters_file

    raw = {name[4:]: value for name, value in vars(args).items()
           if name.startswith("opt_") and value is not None}
    parameters: dict[str, Any] = {}
    if args.parameters_file:
        parameters.update(read_parameters_file(args.parameters_file))
    parameters.update({name: parse_value(value) for name, value in args.parameter})
    if parameters:
        raw["parameters"] = parameters
    return parse_layer(raw, CLI, "command line")


def output_path(notebook: Path, args: argparse.Namespace) -> Path:
    """Where the executed notebook goes; never the input unless --inplace."""
    if args.inplace:
        return notebook
    if args.output:
        out = Path(args.output)
        if out.resolve() == notebook.resolve():
            raise UsageError(f"-o {out} is the input notebook; use --inplace to overwrite it")
        return out
    return notebook.with_name(notebook.name[: -len(notebook.suffix)] + ".executed.ipynb"
                              if notebook.suffix else notebook.name + ".executed.ipynb")


def _start_preloaded_template(plan: Any) -> None:
    """`--preload`: the template imports those modules ("auto": what this notebook imports)."""
    from .kernel.forkserver_client import warm_up
    from .kernel.preload import AUTO, NEVER, notebook_imports
    from .kernel.specs import kernel_argv

    sources = [c.source for c in plan.notebook.cells if c.cell_type == "code"]
    preload = list(plan.config.preload) if plan.config.preload != AUTO else \
        [name for name in notebook_imports(sources) if name.partition(".")[0] not in NEVER]
    warm_up(kernel_argv(plan.kernel_name), preload, str(Path.cwd()))


def cmd_execute(args: argparse.Namespace) -> int:
    """`nbtest execute`: run one notebook, write the executed copy, print a summary."""
    import nbformat

    from .callbacks import ProgressCallback, TimingCallback
    from .callbacks.timing import format_slowest
    from .execute import plan_notebook, run_plan
    from .failure_text import failure_text

    notebook = Path(args.notebook)
    explicit = _explicit_options(args)
    # One notebook: starting the fork template would cost more than it saves, unless asked
    # to preload (then the kernel is forked from a template that imported those modules).
    explicit.setdefault("fork", "yes" if explicit.get("preload") else "no")
    config = NbTestConfig(explicit=explicit, project=project_layer(Path.cwd()))
    out = output_path(notebook, args)
    # Before the run: a notebook that ran for an hour must not end in "cannot write".
    check_writable(out, "the executed notebook")
    if args.html:
        html_exporter()  # missing nbconvert: say so before the run, not after
        check_writable(out.with_suffix(".html"), "the HTML copy")
    from .callbacks.memory import MemoryCallback

    callbacks: list[Callback] = [TimingCallback(), MemoryCallback()]
    if not args.no_progress:
        callbacks.append(ProgressCallback())
    callbacks += [load_callback(spec) for spec in args.callback]
    if args.registry:
        callbacks.append(_registry_capture(config))
    if config.profile:
        from .callbacks.profile import ProfileCallback, profile_lines

        callbacks.append(ProfileCallback())
    from .callbacks.outputs import OutputCheck

    callbacks.append(OutputCheck.from_config(config, Path.cwd()))
    plan = plan_notebook(notebook, config)
    if plan.config.preload and plan.config.fork != "no":
        _start_preloaded_template(plan)
    if args.prepare_only:
        write_atomic(out, nbformat.writes(plan.notebook))
        print(f"nbtest: prepared {notebook} (not run)\n  wrote {out}", file=sys.stderr)
        return EXIT_OK
    if plan.config.gpu_min_free and not plan.config.skip:
        from .gpu.probe import check_preflight

        check_preflight(plan.config.gpu_min_free)  # PreflightError: exit 3, nothing run
    result = run_plan(plan, callbacks)
    if args.registry:
        _record_registry(notebook, config, result)
    wrote: list[str] = []
    unwritten = ""
    try:
        write_atomic(out, nbformat.writes(result.notebook))
        wrote.append(str(out))
        if args.html:
            write_html(result.notebook, out.with_suffix(".html"))
            wrote.append(str(out.with_suffix(".html")))
    except OSError as exc:  # a full disk, a folder removed during the run: keep the verdict
        unwritten = f"nbtest: could not write {out.with_suffix('.html') if wrote else out}: " \
                    f"{why(exc)}"
    ran = sum(1 for c in result.cells if c.execution_count)
    summary = f"nbtest: {result.status} {notebook} in {result.duration:.2f} s ({ran} cells run)"
    if result.reason:
        summary += f": {result.reason}"
    timings = CellTimings.of(result.extras)
    print(summary, file=sys.stderr)
    if timings and timings.slowest:
        print(f"  slowest: {format_slowest(timings.slowest)}", file=sys.stderr)
    figures = MemoryFigures.of(result.extras)
    memory = [f"{label} {value} MiB" for value, label in
              ((figures.peak_rss_mib, "peak RSS"), (figures.peak_gpu_mib, "peak GPU"))
              if value is not None] if figures else []
    if figures and figures.peak_gpu_mib is not None and figures.peak_gpu_source:
        memory[-1] += f" ({figures.peak_gpu_source})"
    if memory:
        print(f"  memory: {', '.join(memory)} (kernel process tree)", file=sys.stderr)
    profile = Profile.of(result.extras) if config.profile else None
    for line in profile_lines(profile.as_dict()) if profile else ():
        print(f"  {line}", file=sys.stderr)
    if figures and figures.gpu_memory_left:
        print(f"  warning: GPU memory not returned: {figures.gpu_memory_left}", file=sys.stderr)
    if wrote:
        print(f"  wrote {' and '.join(wrote)}", file=sys.stderr)
    if unwritten:
        print(unwritten, file=sys.stderr)
    if result.status == NB_FAILED:
        print("\n" + failure_text(result, color=sys.stderr.isatty()), file=sys.stderr)
        return EXIT_FAILED
    if config.update_outputs and result.passed:
        from .outputs.update import write_updated_outputs

        updated = write_updated_outputs(notebook, result)
        print(f"  updated the stored outputs of {updated} cell{'' if updated == 1 else 's'} "
              f"in {notebook}", file=sys.stderr)
    return EXIT_UNWRITTEN if unwritten else EXIT_OK


def _registry_capture(config: NbTestConfig) -> Callback:
    from .callbacks.registry import RegistryCapture

    if not (config.registry and config.api):
        raise UsageError("--registry needs [tool.nbtest] registry and api in pyproject.toml "
                         "(run nbtest from the project's folder)")
    return RegistryCapture(config.api)


def _record_registry(notebook: Path, config: NbTestConfig, result: Any) -> None:
    """Merge the notebook's this_tests calls into the registry file, as a test run would."""
    from .registry.file import Registry, update_registry_file

    root = Path.cwd()
    file = os.path.relpath(notebook.resolve(), root).replace(os.sep, "/")
    new = Registry()
    captured = ThisTestsCapture.of(result.extras)
    for name, cell in captured.entries if captured else ():
        new.add(name, {"file": file, "test": notebook.name, "cell": cell})
    update_registry_file(root / config.registry, new, {(file, notebook.name)}, root)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nbtest` console script."""
    from .kernel.interrupt import terminate_as_interrupt

    terminate_as_interrupt()  # SIGTERM: the same clean shutdown as Ctrl-C
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught, not at exit
        return code
    except BrokenPipeError:
        # `nbtest affected | head -3`: the reader has gone, which is no error of the user's.
        # Python flushes stdout again at exit; point it at /dev/null so that stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """nbtest's warnings about a notebook as one line; others as Python formats them."""
    from .notebook import NotebookWarning

    if issubclass(category, NotebookWarning):
        return f"nbtest: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


_PYTHON_FORMAT = warnings.formatwarning


def _dispatch(argv: Sequence[str] | None) -> int:
    """Run the command `argv` asks for; expected errors and Ctrl-C become exit codes."""
    warnings.formatwarning = _format_warning
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        # `nbtest run GLOB -- PYTEST_ARGS`: everything after `--` goes to pytest untouched.
        pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
        argv = argv[: argv.index("--")] if "--" in argv else argv
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return cmd_run(args, pytest_args)
        if args.command == "preflight":
            from .gpu import cmd as preflight_cmd

            return preflight_cmd.run(args)
        if args.command == "registry":
            from .registry import cmd as registry_cmd

            return registry_cmd.run(args)
        if args.command == "affected":
            from .affected import cmd as affected_cmd

            return affected_cmd.run(args, pytest_args)
        return cmd_execute(args)
    except NbTestError as exc:
        prefix = "" if exc.message.startswith("nbtest:") else "nbtest: error: "
        print(f"{prefix}{exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nbtest: interrupted; the kernel was shut down", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
