"""`nbtest preflight [--min-free SIZE] [-v] [--json]`: the GPUs, who holds them, the verdict.

Exit codes: 0 the requirement is met (or no GPU is visible: notebooks run on the CPU), 1 it
is not; a SIZE that does not parse is a usage error (2).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import NbTestConfig, parse_size, project_layer
from ..errors import ConfigError
from .probe import PreflightReport, format_report, preflight


def add_parser(commands: Any) -> None:
    """Register the `preflight` subcommand on the CLI's subparsers."""
    parser = commands.add_parser(
        "preflight", help="list the GPUs and their memory holders; exit 1 if none has enough free",
        description="Probe the visible GPUs as the notebook runs will, and judge the "
                    "gpu_min_free requirement. Exit 0 when met or when no GPU is visible, "
                    "1 when not met.")
    parser.add_argument("--min-free", metavar="SIZE",
                        help="free memory needed on one GPU, e.g. 8GiB, 8GB, 500MiB or bytes "
                             "(default: gpu_min_free from [tool.nbtest], else 8GiB; 0: no check)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also say which backend answered and why the others did not")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def min_free_of(args: argparse.Namespace) -> int:
    """The requirement in bytes: --min-free, else the project's gpu_min_free, else the default."""
    if args.min_free is not None:
        try:
            return parse_size(args.min_free)
        except ValueError as exc:
            raise ConfigError(f"--min-free: {exc}", source="command line",
                              key="gpu_min_free") from None
    return int(NbTestConfig(project=project_layer(Path.cwd())).gpu_min_free)


def report_json(report: PreflightReport) -> dict[str, Any]:
    """The report as plain data: verdict, requirement, backend and every visible GPU."""
    result = report.probe
    return {
        "ok": report.ok,
        "reason": report.reason,
        "min_free_bytes": report.min_free,
        "backend": result.backend,
        "backend_failures": list(result.reasons),
        "cuda_visible_devices": result.visible_spec,
        "gpus_on_machine": result.total,
        "gpus": [asdict(g) for g in report.gpus],
    }


def run(args: argparse.Namespace) -> int:
    """Run `nbtest preflight`; the exit code is 0 when the requirement is met, else 1."""
    report = preflight(min_free_of(args))
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(format_report(report, verbose=args.verbose))
    return 0 if report.ok else 1
