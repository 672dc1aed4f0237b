"""The this_tests registry: the API notebooks and tests call (api), the JSON file (file) and
`nbtest registry` (cmd); the pytest session that fills it is nbtest.plugin.registry.
"""

from .api import show_tests, this_tests

__all__ = ["show_tests", "this_tests"]
