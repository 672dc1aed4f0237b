"""A deep-learning library's nbdev docs suite, written for this project (issue 28, section 2).

`make_dl_project(root)` writes an nbdev project: a mid-size package `dlbench` (about twenty
submodules: imports, torch_core, data.core/synth/transforms/all, models, learner, callbacks,
metrics, display, tabular, vision, text, basics) that imports torch, numpy, pandas, matplotlib,
tqdm (and scipy when installed), and 20 notebooks in nbs/ that enter it through different
submodules (`dlbench.basics` in most, `dlbench.data.all`, `dlbench.torch_core`,
`dlbench.tabular.all`, `dlbench.vision.all`, `dlbench.text.core`), each with tiny test cells, a
tiny model trained on synthetic data with a tqdm progress bar, DataFrames shown and a plot.
"""

from __future__ import annotations

from pathlib import Path

from .sets import code_cell, nbdev_pyproject, write_notebook

LIB = "dlbench"
N_NOTEBOOKS = 20

PYPROJECT = nbdev_pyproject(LIB, "a deep-learning library's docs suite, for the benchmark")

# The package: path -> source. Heavy imports happen in `imports`, as such libraries do.
MODULES: dict[str, str] = {
    "__init__.py": '__version__ = "0.0.1"\n',
    "imports.py": """\
import math, os, random, sys, time, warnings
from functools import partial
import numpy as np
import pandas as pd
import matplotlib
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm
try:
    import scipy.stats, scipy.optimize
except ImportError:
    scipy = None
""",
    "test.py": """\
from .imports import *

def test_eq(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), (a, b)
    else:
        assert a == b, (a, b)

def test_close(a, b, eps=1e-5):
    assert abs(float(a) - float(b)) < eps, (a, b)
""",
    "torch_core.py": """\
from .imports import *
from .test import *

def set_seed(s=42):
    random.seed(s); np.random.seed(s); torch.manual_seed(s)

def tensor(x, *rest):
    return torch.tensor([x, *rest] if rest else x)

def to_np(t):
    return t.detach().cpu().numpy()

def default_device():
    return torch.device("cpu")
""",
    "data/__init__.py": "",
    "data/core.py": """\
from ..torch_core import *

class DataLoaders:
    def __init__(self, train, valid):
        self.train, self.valid = train, valid

    @classmethod
    def from_tensors(cls, x, y, bs=32, valid_pct=0.2):
        n = int(len(x) * (1 - valid_pct))
        train = DataLoader(TensorDataset(x[:n], y[:n]), batch_size=bs, shuffle=True)
        valid = DataLoader(TensorDataset(x[n:], y[n:]), batch_size=bs)
        return cls(train, valid)
""",
    "data/synth.py": """\
from ..torch_core import *

def regression(n=256, d=8, noise=0.1):
    x = torch.randn(n, d)
    w = torch.linspace(-1, 1, d)
    return x, (x @ w + noise * torch.randn(n)).unsqueeze(1)

def classification(n=256, d=8, classes=3):
    x = torch.randn(n, d)
    return x, (x[:, :classes].argmax(1))
""",
    "data/transforms.py": """\
from ..torch_core import *

class Normalize:
    def __init__(self, mean, std): self.mean, self.std = mean, std
    def __call__(self, x): return (x - self.mean) / self.std
    @classmethod
    def from_tensor(cls, x): return cls(x.mean(0), x.std(0) + 1e-7)
""",
    "data/all.py": """\
from .core import *
from .synth import *
from .transforms import *
""",
    "models/__init__.py": "",
    "models/mlp.py": """\
from ..torch_core import *

class MLP(nn.Module):
    def __init__(self, d_in, d_out, hidden=16):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))
    def forward(self, x): return self.layers(x)
""",
    "callback/__init__.py": "",
    "callback/core.py": """\
from ..torch_core import *

class Callback:
    def before_fit(self, learn): pass
    def after_batch(self, learn): pass
    def after_epoch(self, learn): pass

class Recorder(Callback):
    def before_fit(self, learn): self.losses, self.valid = [], []
    def after_batch(self, learn): self.losses.append(learn.loss)
    def after_epoch(self, learn): self.valid.append(learn.validate())
""",
    "metrics.py": """\
from .torch_core import *

def mse(pred, y): return F.mse_loss(pred, y).item()
def accuracy(pred, y): return (pred.argmax(1) == y).float().mean().item()
""",
    "learner.py": """\
from .torch_core import *
from .callback.core import *

class Learner:
    def __init__(self, dls, model, loss_func, lr=0.05, cbs=()):
        self.dls, self.model, self.loss_func, self.lr = dls, model, loss_func, lr
        self.recorder = Recorder()
        self.cbs = [self.recorder, *cbs]
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)

    def validate(self):
        with torch.no_grad():
            losses = [self.loss_func(self.model(x), y).item() for x, y in self.dls.valid]
        return sum(losses) / len(losses)

    def fit(self, epochs):
        for cb in self.cbs: cb.before_fit(self)
        for epoch in tqdm(range(epochs), desc="epoch", mininterval=0):
            for x, y in self.dls.train:
                loss = self.loss_func(self.model(x), y)
                loss.backward(); self.opt.step(); self.opt.zero_grad()
                self.loss = loss.item()
                for cb in self.cbs: cb.after_batch(self)
            for cb in self.cbs: cb.after_epoch(self)
        return self

    def history(self):
        return pd.DataFrame({"epoch": range(len(self.recorder.valid)),
                             "valid_loss": self.recorder.valid})

    def plot_loss(self):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(self.recorder.losses, label="train")
        ax.legend()
        return fig
""",
    "display.py": """\
from .torch_core import *

def describe(t):
    return pd.DataFrame(to_np(t)).describe()
""",
    "tabular/__init__.py": "",
    "tabular/core.py": """\
from ..data.all import *

def df_to_tensors(df, y_col):
    x = torch.tensor(df.drop(columns=[y_col]).values, dtype=torch.float32)
    return x, torch.tensor(df[[y_col]].values, dtype=torch.float32)
""",
    "tabular/all.py": "from ..basics import *\nfrom .core import *\n",
    "vision/__init__.py": "",
    "vision/core.py": """\
from ..data.all import *

def synth_images(n=64, size=8):
    return torch.rand(n, 1, size, size), torch.randint(0, 2, (n,))
""",
    "vision/all.py": "from ..basics import *\nfrom .core import *\n",
    "text/__init__.py": "",
    "text/core.py": """\
from ..basics import *

def tokenize(s): return s.lower().split()
def numericalize(toks, vocab): return torch.tensor([vocab.index(t) for t in toks])
""",
    "basics.py": """\
from .torch_core import *
from .data.all import *
from .models.mlp import *
from .callback.core import *
from .learner import *
from .metrics import *
from .display import *
""",
}

# What each notebook imports (as the suite: basics in about half of them).
ENTRIES = ["basics", "basics", "data.all", "basics", "torch_core", "basics", "tabular.all",
           "basics", "vision.all", "data.all", "basics", "text.core", "basics", "torch_core",
           "basics", "tabular.all", "data.all", "basics", "vision.all", "basics"]

TINY = ["t = tensor([1., 2., 3.])\ntest_eq(t * 2, tensor([2., 4., 6.]))",
        "test_eq(to_np(t).sum(), 6.0)",
        "a = torch.arange(12).reshape(3, 4)\na.shape",
        "test_eq(a.sum(0), tensor([12, 15, 18, 21]))",
        "x = torch.randn(16, 8)\nx.mean().item() == x.mean().item()",
        "np.testing.assert_allclose(np.ones(3) * 2, [2, 2, 2])",
        "pd.Series(range(5)).sum()"]


def notebook_cells(i: int) -> list[dict]:
    """The cells of notebook `i`: nbdev's header and hidden imports, tiny test cells, a
    training run with its progress bar, a DataFrame or two and a plot."""
    entry = ENTRIES[i % len(ENTRIES)]
    extra = "from dlbench.basics import *\n" if entry in ("data.all", "torch_core") else ""
    cells: list[dict] = [
        {"cell_type": "markdown", "metadata": {}, "source": f"# Page {i}\n\n> generated"},
        code_cell(f"#| default_exp page{i:02d}"),
        code_cell(f"#| hide\nfrom nbdev.showdoc import *\nfrom dlbench.{entry} import *\n"
                  + extra + "set_seed(42)"),
        code_cell("#| export\ndef double(x):\n    \"Twice `x`\"\n    return x * 2"),
        code_cell("test_eq(double(tensor([1, 2])), tensor([2, 4]))"),
    ]
    cells += [code_cell(src) for src in TINY * 2]
    cells += [
        code_cell("x, y = regression(n=320, d=8)\ndls = DataLoaders.from_tensors(x, y, bs=32)\n"
                  "len(dls.train), len(dls.valid)"),
        code_cell("learn = Learner(dls, MLP(8, 1), F.mse_loss)\nlearn.fit(4)"),
        code_cell("hist = learn.history()\nhist"),
        code_cell("assert hist.valid_loss.iloc[-1] < hist.valid_loss.iloc[0] * 1.5"),
        code_cell("describe(x[:, :4])"),
        code_cell("fig = learn.plot_loss()\nplt.show()"),
        code_cell("df = pd.DataFrame(to_np(x[:8]), columns=[f'f{k}' for k in range(8)])\n"
                  "df.head()"),
    ]
    if entry == "tabular.all":
        cells.append(code_cell("tx, ty = df_to_tensors(df.assign(t=1.0), 't')\n"
                               "test_eq(tx.shape, (8, 8))"))
    if entry == "vision.all":
        cells.append(code_cell("ims, labels = synth_images()\ntest_eq(ims.shape[1:], (1, 8, 8))"))
    if entry == "text.core":
        cells.append(code_cell("toks = tokenize('A B a')\n"
                               "test_eq(numericalize(toks, ['a', 'b']), tensor([0, 1, 0]))"))
    if i % 3 == 0:
        cells.append(code_cell("xc, yc = classification()\n"
                               "dlc = DataLoaders.from_tensors(xc, yc)\n"
                               "lc = Learner(dlc, MLP(8, 3), F.cross_entropy).fit(3)\n"
                               "pd.DataFrame({'acc': [accuracy(lc.model(xc), yc)]})"))
    return cells


def make_dl_project(root: Path) -> Path:
    """The project: pyproject.toml ([tool.nbdev]), the package, nbs/ with the notebooks."""
    project = root / "dlproj"
    for rel, source in MODULES.items():
        path = project / LIB / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    (project / "nbs").mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "pytest.ini").write_text("[pytest]\n")
    for i in range(N_NOTEBOOKS):
        write_notebook(project / "nbs" / f"{i:02d}_page.ipynb", notebook_cells(i))
    return project


def cell_count() -> int:
    """Code cells over the whole suite."""
    return sum(1 for i in range(N_NOTEBOOKS) for c in notebook_cells(i)
               if c["cell_type"] == "code")
