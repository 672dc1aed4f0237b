"""Names vulture (`vulture`, configured in pyproject.toml's [tool.vulture]) takes for dead
that are not: each is used by something vulture cannot see. pytest's hooks and item methods
are left out by name in pyproject.toml."""

# ruff: noqa
from nbtest.kernel.provisioner import ForkProvisioner

_ = object()

ForkProvisioner  # the jupyter_client.kernel_provisioners entry point (pyproject.toml)
_.__getattr__  # nbtest/__init__.py, nbtest/utils/mem.py: module __getattr__ (lazy imports)
_.__dir__  # nbtest/__init__.py: module __dir__, listing the lazy names
_.parallel  # callbacks/coverage.py: coverage's config, read by coverage itself
_.sigterm  # callbacks/coverage.py: coverage's config, read by coverage itself
_.allow_stdin  # kernel/launch.py: the kernel client's trait, read by jupyter_client
_._kernel_spec  # kernel/launch.py: the manager's cached spec, read by jupyter_client
_.hist_file  # kernel/likeness.py: IPython's HistoryManager trait
_.of  # config.py: NbTestConfig.of, public API (docs_src/execute.ipynb)
_.EXIT_USAGE  # cli.py: the documented exit codes, named together
_.EXIT_PREFLIGHT  # cli.py: the documented exit codes, named together
_.NB_ERROR  # results.py: a notebook status, named with the others
_.exc_type  # utils/text.py: __exit__'s signature
_.tb  # utils/text.py: __exit__'s signature
