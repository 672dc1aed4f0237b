"""Stopping a pytest session before any test runs, with nbtest's message shown as written.

`pytest.exit` alone prints its message in a banner (`! _pytest.outcomes.Exit: ...`), one line
of it under -q; the GPU preflight's refusal and the --count refusal are paragraphs a user must
read whole, in every verbosity and under xdist (where the controller stops the session).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import pytest


class _Refusal:
    """Shows the message in place of the terminal reporter's exit banner."""

    def __init__(self, config: pytest.Config, text: str) -> None:
        self.config, self.text = config, text

    @pytest.hookimpl(trylast=True)  # after the terminal reporter kept the exit for its banner
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Print the message; drop the banner the terminal reporter would print at the end."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(self.text, file=sys.stderr)
            return
        if getattr(reporter, "_keyboardinterrupt_memo", None) is not None:
            reporter._keyboardinterrupt_memo = None
        reporter.ensure_newline()
        reporter.write_line(self.text)


def stop_session(config: pytest.Config, text: str, returncode: int) -> NoReturn:
    """End the session with `returncode`, printing `text` as written."""
    if not config.pluginmanager.has_plugin("nbtest-refusal"):
        config.pluginmanager.register(_Refusal(config, text), "nbtest-refusal")
    pytest.exit(text.splitlines()[0], returncode=returncode)
