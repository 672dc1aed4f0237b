"""--nbtest-affected with notebooks that feed each other: one writes a file (its product) that
another reads. The consumer runs after its producer whenever the producer runs, and a consumer
whose input is a missing product pulls its producer into the session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from test_affected import edit_cell, ran, run_affected

import nbtest.affected.store
import nbtest.plugin.affected
from nbtest import this_tests

pytest_plugins = ["pytester"]

TRAIN = "import json\nwith open('model.json', 'w') as fh:\n    json.dump({{'weight': {}}}, fh)"
EVAL = "import json\nmodel = json.load(open('model.json'))\nassert model['weight'] == 2, model"


def test_a_consumer_follows_its_producer(pytester: pytest.Pytester, tmp_path: Path,
                                         no_kernel_left) -> None:
    """A trainer and an evaluator, a_train/b_eval, named so that pytest collects the consumer
    (eval) first: a producer changed to write a bad model runs, and its consumer runs after it
    and fails in the same session; in a fresh clone with the cache copied over and no
    model.json, the consumer pulls its producer in, which runs first, and both pass."""
    this_tests(nbtest.affected.store.follow_products,
               nbtest.plugin.affected.AffectedSession.deselect)
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    write_notebook(root / "train.ipynb", [TRAIN.format(2)])
    write_notebook(root / "eval.ipynb", [EVAL])
    (root / "model.json").write_text('{"weight": 2}')  # as committed: eval passes alone
    # The first session knows nothing of products yet: pytest's order, eval first.
    outcomes, text = ran(pytester)
    assert outcomes == {"train.ipynb": "passed", "eval.ipynb": "passed"}, text
    assert ran(pytester)[0] == {}

    edit_cell(root / "train.ipynb", 0, source=TRAIN.format(3))
    report = run_affected(root)
    assert "eval.ipynb: its input model.json is made by train.ipynb, which runs" in report, \
        report
    outcomes, text = ran(pytester)
    assert outcomes == {"train.ipynb": "passed", "eval.ipynb": "failed"}, text
    assert text.index("train.ipynb PASSED") < text.index("eval.ipynb FAILED"), text
    assert "AssertionError: {'weight': 3}" in text, text
    edit_cell(root / "train.ipynb", 0, source=TRAIN.format(2))
    outcomes, text = ran(pytester)
    assert outcomes == {"train.ipynb": "passed", "eval.ipynb": "passed"}, text
    assert ran(pytester)[0] == {}

    clone = tmp_path / "clone"  # a fresh checkout: the product is not committed
    shutil.copytree(root, clone, ignore=shutil.ignore_patterns("model.json", "junit.xml"))
    report = run_affected(clone)
    assert "eval.ipynb: file removed: model.json" in report, report
    assert "train.ipynb: its product model.json, read by eval.ipynb, is missing" in report, \
        report
    outcomes, text = ran(pytester, cwd=clone)
    assert outcomes == {"train.ipynb": "passed", "eval.ipynb": "passed"}, text
    no_kernel_left()
