"""The this_tests registry: the API notebooks and tests call (api), the JSON file (file), the
pytest session that fills it (session) and `nbtest registry` (cmd).
"""

from .api import show_tests, this_tests

__all__ = ["show_tests", "this_tests"]
