"""The option table: parsers, precedence of the layers, errors naming their source, and the
error tree (every error pickles with its fields)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from nbtest import errors, this_tests
from nbtest.cli import _explicit_options, build_parser
from nbtest.config import (
    CLI,
    METADATA,
    OPTIONS,
    NbTestConfig,
    options_for,
    parse_bool,
    parse_layer,
    parse_seconds,
    parse_size,
    parse_skip,
    parse_str_list,
    project_layer,
)
from nbtest.execute import plan_notebook


@pytest.mark.parametrize(("raw", "seconds"), [
    (3, 3.0), ("2.5", 2.5), (0, None), (-1, None), ("none", None), (None, None), ("", None)])
def test_parse_seconds(raw: object, seconds: float | None) -> None:
    this_tests(parse_seconds)
    assert parse_seconds(raw) == seconds


@pytest.mark.parametrize("raw", [True, "soon", [1]])
def test_parse_seconds_rejects(raw: object) -> None:
    this_tests(parse_seconds)
    with pytest.raises((ValueError, TypeError)):
        parse_seconds(raw)


def test_parse_bool_size_skip_and_lists() -> None:
    this_tests(parse_bool, parse_size, parse_skip, parse_str_list)
    assert [parse_bool(v) for v in (True, "yes", "1", "on", False, "no", "0", "")] == \
        [True] * 4 + [False] * 4
    with pytest.raises(ValueError):
        parse_bool("maybe")
    assert parse_size("8GiB") == 8 * 2**30
    assert parse_size("8GB") == 8 * 10**9
    assert parse_size("500MiB") == 500 * 2**20
    assert parse_size("0") == 0
    assert parse_size(1234) == 1234
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    assert parse_skip(True) == "skipped by notebook metadata"
    assert parse_skip(False) is None
    assert parse_skip("needs a GPU") == "needs a GPU"
    assert parse_str_list("slow, cuda  cpp") == ("slow", "cuda", "cpp")
    assert parse_str_list(["slow"]) == ("slow",)


def test_option_table_is_consistent() -> None:
    this_tests(options_for, "nbtest.config.Option.pytest_flag")
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    for option in OPTIONS:
        assert option.help, option.name
        assert option.pytest_flag == "--nbtest-" + option.name.replace("_", "-")
    assert {"timeout", "notebook_timeout", "kernel", "skip", "parameters"} <= \
        {o.name for o in options_for(METADATA)}
    assert "registry" not in {o.name for o in options_for(METADATA)}
    assert "cwd" in {o.name for o in options_for(METADATA)}  # relative to the notebook


def test_defaults() -> None:
    this_tests(NbTestConfig)
    config = NbTestConfig()
    assert config.timeout == 600.0
    assert config.notebook_timeout is None
    assert config.startup_timeout == 60.0
    assert config.kernel is None and config.seed is None and config.skip is None
    assert config.allow_errors is False
    assert dict(config.parameters) == {}
    with pytest.raises(AttributeError):
        config.no_such_option  # noqa: B018


def test_precedence_explicit_over_notebook_over_project_over_default() -> None:
    this_tests(NbTestConfig, NbTestConfig.with_explicit, NbTestConfig.with_notebook)
    config = NbTestConfig(explicit={"timeout": 1.0}, notebook={"timeout": 2.0, "kernel": "nb"},
                          project={"timeout": 3.0, "kernel": "proj", "seed": 7})
    assert config.timeout == 1.0
    assert config.kernel == "nb"
    assert config.seed == 7
    assert config.startup_timeout == 60.0
    assert config.with_explicit(kernel="cli").kernel == "cli"
    assert config.with_notebook({}).timeout == 1.0
    assert NbTestConfig(project={"timeout": 3.0}).with_notebook({"timeout": 2.0}).timeout == 2.0


def test_parameters_merge_key_by_key_across_layers() -> None:
    this_tests(NbTestConfig)
    config = NbTestConfig(explicit={"parameters": {"a": 1}},
                          notebook={"parameters": {"a": 2, "b": 2}},
                          project={"parameters": {"a": 3, "b": 3, "c": 3}})
    assert dict(config.parameters) == {"a": 1, "b": 2, "c": 3}


def test_config_of_parses_and_names_the_bad_value() -> None:
    this_tests(NbTestConfig.of)
    assert NbTestConfig.of(timeout="5", seed="3").timeout == 5.0
    with pytest.raises(errors.ConfigError) as info:
        NbTestConfig.of(timeout="soon")
    assert info.value.key == "timeout" and "configuration" in info.value.message
    with pytest.raises(errors.ConfigError, match="unknown nbtest option 'colour'"):
        NbTestConfig.of(colour=True)


def test_parse_layer_refuses_options_not_settable_there() -> None:
    this_tests(parse_layer)
    with pytest.raises(errors.ConfigError) as info:
        parse_layer({"registry": "r.json"}, METADATA, "nb.ipynb: metadata.nbtest")
    assert info.value.source == "nb.ipynb: metadata.nbtest"
    assert "known:" in info.value.message
    assert parse_layer({"cwd": "/tmp"}, CLI, "command line") == {"cwd": "/tmp"}


def test_project_layer_reads_tool_nbtest(tmp_path: Path) -> None:
    this_tests(project_layer)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.nbtest]\nnbtest = true\ntimeout = 42\nseed = 1\napi = ["nbtest"]\n')
    layer = project_layer(tmp_path, {"seed": "2"})
    assert layer == {"timeout": 42.0, "seed": 2, "api": ("nbtest",)}
    assert project_layer(tmp_path / "nowhere") == {}


def test_project_layer_bad_value_names_pyproject(tmp_path: Path) -> None:
    this_tests(project_layer)
    (tmp_path / "pyproject.toml").write_text('[tool.nbtest]\ntimeout = "soon"\n')
    with pytest.raises(errors.ConfigError) as info:
        project_layer(tmp_path)
    assert str(tmp_path / "pyproject.toml") in info.value.message
    assert "[tool.nbtest]" in info.value.message and "'timeout'" in info.value.message
    (tmp_path / "pyproject.toml").write_text("[tool.nbtest\n")
    with pytest.raises(errors.ConfigError, match="cannot read"):
        project_layer(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.nbtest]\ncells_per_item = 1\n")
    with pytest.raises(errors.ConfigError, match="unknown nbtest option"):
        project_layer(tmp_path, {})


def test_cli_flags_become_the_explicit_layer() -> None:
    this_tests(build_parser, parse_layer, "nbtest.params.parse_value")
    args = build_parser().parse_args(
        ["execute", "nb.ipynb", "--timeout", "4", "--notebook-timeout", "9", "--seed", "5",
         "--kernel", "k", "--cwd", "/x", "--allow-errors", "-p", "n", "3", "-p", "s", "hi"])
    layer = _explicit_options(args)
    assert layer == {"timeout": 4.0, "notebook_timeout": 9.0, "seed": 5, "kernel": "k",
                     "cwd": "/x", "allow_errors": True, "parameters": {"n": 3, "s": "hi"}}
    with pytest.raises(errors.ConfigError, match="command line"):
        _explicit_options(build_parser().parse_args(["execute", "nb.ipynb", "--seed", "x"]))


def test_precedence_through_plan_notebook(tmp_path: Path, make_notebook) -> None:
    """command line > metadata.nbtest > [tool.nbtest] > default, resolved for one notebook."""
    this_tests(plan_notebook, project_layer, NbTestConfig)
    path = make_notebook("p.ipynb", ["x = 1"],
                         metadata={"nbtest": {"timeout": 20, "notebook_timeout": 30}})
    (tmp_path / "pyproject.toml").write_text(
        "[tool.nbtest]\ntimeout = 10\nnotebook_timeout = 11\nseed = 12\n")
    project = project_layer(tmp_path)
    plan = plan_notebook(path, NbTestConfig(explicit={"timeout": 5.0}, project=project))
    assert plan.config.timeout == 5.0  # command line
    assert plan.config.notebook_timeout == 30.0  # notebook metadata
    assert plan.config.seed == 12  # pyproject
    assert plan.config.startup_timeout == 60.0  # default
    assert plan.cwd == path.resolve().parent
    assert plan.kernel_name == "python3"


def test_bad_metadata_value_through_plan_names_the_notebook(make_notebook) -> None:
    this_tests(plan_notebook, "nbtest.notebook.notebook_settings")
    path = make_notebook("bad.ipynb", ["x = 1"], metadata={"nbtest": {"timeout": [1]}})
    with pytest.raises(errors.ConfigError) as info:
        plan_notebook(path)
    assert str(path) in info.value.message and "metadata.nbtest" in info.value.message


ERRORS = [cls for cls in vars(errors).values()
          if isinstance(cls, type) and issubclass(cls, errors.NbTestError)]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_errors_pickle_with_their_fields(cls: type[errors.NbTestError]) -> None:
    this_tests(cls)
    err = cls("nb.ipynb: cell 3 is wrong. Fix it.", path="nb.ipynb", cell=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.message == err.message == str(back)
    assert back.fields == {"path": "nb.ipynb", "cell": 3}
    assert (back.path, back.cell) == ("nb.ipynb", 3)
    assert back.exit_code == err.exit_code
    assert isinstance(back, errors.NbTestError)


def test_error_tree_and_exit_codes() -> None:
    this_tests(errors.NbTestError, errors.UsageError)
    assert issubclass(errors.ConfigError, errors.UsageError)
    assert issubclass(errors.NoSuchKernelError, errors.UsageError)
    assert issubclass(errors.ThisTestsError, ValueError)
    assert errors.UsageError("x").exit_code == 2
    assert errors.NotebookLoadError("x").exit_code == 2
    assert errors.ParameterError("x").exit_code == 2
    assert errors.PreflightError("x").exit_code == 3
    assert errors.NotebookFailed("x").exit_code == 1
    for cls in ERRORS:
        assert cls.__doc__, cls.__name__
