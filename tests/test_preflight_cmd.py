"""Tests of `nbtest preflight`, run in a subprocess against the stand-in nvidia-smi.

Through `nbtest.cli.main` once cli.py registers the subcommand; until then through a small
argparse front that mirrors main's error handling, so the assertions are the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.fake_nvidia_smi import app, gpu, install

from nbtest import this_tests
from nbtest.cli import build_parser

UUID = "GPU-5b0f0d6c-1111-2222-3333-444455556666"
VIA_CLI = "import sys; from nbtest.cli import main; sys.exit(main(['preflight', *sys.argv[1:]]))"
VIA_MODULE = """
import argparse, sys
from nbtest.gpu import cmd as preflight_cmd
from nbtest.errors import NbTestError
parser = argparse.ArgumentParser(prog="nbtest")
preflight_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
try:
    sys.exit(preflight_cmd.run(parser.parse_args(["preflight", *sys.argv[1:]])))
except NbTestError as exc:
    print(f"nbtest: error: {exc.message}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def registered() -> bool:
    """Whether nbtest/cli.py already has the `preflight` subcommand."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return "preflight" in (commands.choices or {})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CUDA_VISIBLE_DEVICES", "PYTEST_XDIST_WORKER"):
        monkeypatch.delenv(var, raising=False)


def preflight_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `nbtest preflight ARGS` in a subprocess (hang guard 60 s)."""
    code = VIA_CLI if registered() else VIA_MODULE
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pid: int) -> Path:
    """A busy card: 4000 MiB free of 80 GiB, a Jupyter kernel holding 77000."""
    install(tmp_path / "smi", monkeypatch,
            {"gpus": [gpu(0, free=4000, total=81920, uuid=UUID)], "apps": [app(pid, 77000, UUID)]})
    return tmp_path


def test_busy_card_exits_1_and_names_the_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                kernel_holder: subprocess.Popen) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.probe.format_report")
    done = preflight_cmd(cwd=busy(tmp_path, monkeypatch, kernel_holder.pid))
    assert done.returncode == 1, done.stderr
    assert "4000 MiB free of 81920 MiB" in done.stdout
    assert f"pid {kernel_holder.pid}" in done.stdout and "(Jupyter kernel)" in done.stdout
    assert "shut down idle Jupyter kernels" in done.stdout
    assert "nbtest preflight --min-free 2GiB" in done.stdout


def test_lower_requirement_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  kernel_holder: subprocess.Popen) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.cmd.min_free_of")
    cwd = busy(tmp_path, monkeypatch, kernel_holder.pid)
    done = preflight_cmd("--min-free", "2GiB", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "4000 MiB free" in done.stdout
    assert preflight_cmd("--min-free", "0", cwd=cwd).returncode == 0


def test_project_setting_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        kernel_holder: subprocess.Popen) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.cmd.min_free_of")
    cwd = busy(tmp_path, monkeypatch, kernel_holder.pid)
    (cwd / "pyproject.toml").write_text('[tool.nbtest]\ngpu_min_free = "3000MiB"\n')
    done = preflight_cmd(cwd=cwd)
    assert done.returncode == 0 and "3000 MiB needed" in done.stdout
    assert preflight_cmd("--min-free", "5000MiB", cwd=cwd).returncode == 1  # flag wins


def test_free_card_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.probe.preflight")
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=80000)]})
    done = preflight_cmd(cwd=tmp_path)
    assert done.returncode == 0 and "GPU 0 has 80000 MiB free" in done.stdout


def test_no_gpu_visible_exits_0_in_one_line(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.probe.format_report")
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=4000)]})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    done = preflight_cmd(cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip().count("\n") == 0 and "no GPU" in done.stdout


def test_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              kernel_holder: subprocess.Popen) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.cmd.report_json")
    done = preflight_cmd("--json", cwd=busy(tmp_path, monkeypatch, kernel_holder.pid))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["ok"] is False and data["backend"] == "smi"
    assert data["min_free_bytes"] == 8 * 2**30
    assert data["gpus"][0]["free_mib"] == 4000
    holder = data["gpus"][0]["processes"][0]
    assert (holder["pid"], holder["used_mib"], holder["jupyter"]) == (
        kernel_holder.pid, 77000, True)


def test_verbose_says_why_backends_failed(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.probe.format_report")
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=4000)], "exit": 9})
    done = preflight_cmd("-v", cwd=tmp_path)
    assert done.returncode == 0
    assert "backend: none" in done.stdout and "exited 9" in done.stdout


def test_bad_size_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.cmd.min_free_of")
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=4000)]})
    done = preflight_cmd("--min-free", "8XB", cwd=tmp_path)
    assert done.returncode == 2
    assert "'8XB'" in done.stderr and "Traceback" not in done.stderr
