"""What nbtest's own tests share besides fixtures (those stay in tests/conftest.py)."""
