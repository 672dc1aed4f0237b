"""Helpers for tests: output capture (text) and GPU memory (mem)."""
