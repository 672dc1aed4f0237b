"""The one exception tree of nbtest.

    NbTestError                      base; `.message`, structured fields, `.exit_code`
    ├── UsageError                   bad option value, bad argument (exit 2)
    │   ├── ConfigError              an option value that does not parse
    │   └── NoSuchKernelError        unknown kernel name; lists the installed kernelspecs
    ├── NotebookLoadError            not JSON / not a notebook / unsupported nbformat (exit 2)
    ├── ParameterError               parameters that cannot be injected (exit 2)
    ├── KernelStartError             the kernel did not start or its startup code failed
    ├── NotebookFailed               a notebook (or cell item) failed; carries the report
    ├── PreflightError               the GPU preflight refused to run (exit 3)
    ├── RegistryError                a registry file that cannot be read or written
    ├── KernelCodeError              code run through nbtest.notebook() raised in the kernel
    │   └── CallTimeout              ... or ran past its time limit
    └── ThisTestsError               a bad argument to this_tests (also a ValueError)

Every error pickles with its fields (it crosses xdist and process boundaries), and its
message names the file, the cell where there is one, and what to do.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[NbTestError], message: str, fields: dict[str, Any]) -> NbTestError:
    """Recreate an error from its message and fields (the unpickling side)."""
    err = cls.__new__(cls)
    NbTestError.__init__(err, message, **fields)
    return err


class NbTestError(Exception):
    """Base of every error nbtest raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


class UsageError(NbTestError):
    """The command line or configuration asks for something impossible."""

    exit_code = 2


class ConfigError(UsageError):
    """An option value that does not parse."""


class NoSuchKernelError(UsageError):
    """A kernel name that no installed kernelspec provides."""


class NotebookLoadError(NbTestError):
    """A file that cannot be read as a notebook."""

    exit_code = 2


class ParameterError(NbTestError):
    """Parameters that cannot be injected into a notebook."""

    exit_code = 2


class KernelStartError(NbTestError):
    """The kernel did not start, or the startup code failed inside it."""


class NotebookFailed(NbTestError):
    """A notebook failed: a cell error, a timeout or a dead kernel; the message is the report."""


class PreflightError(NbTestError):
    """The GPU preflight found no card with enough free memory."""

    exit_code = 3


class RegistryError(NbTestError):
    """A registry file that cannot be parsed, locked or written."""


class ThisTestsError(NbTestError, ValueError):
    """A bad argument to this_tests."""


class KernelCodeError(NbTestError):
    """Code a test ran in a notebook's kernel (a cell, a ref, inject) raised: `ename`,
    `evalue`, and where, when in the notebook: `cell` (its number) and `line`."""


class CallTimeout(KernelCodeError):
    """A cell or call run through nbtest.notebook() ran past its time limit."""
