"""Affected-only runs (--nbtest-affected): the cache of what each notebook used (store), the
fingerprints it compares (fingerprint) and `nbtest affected` (cmd). The pytest session is
nbtest.plugin.affected; what the kernel runs (the tracker and its hooks) is nbtest.inkernel's.

Importing this package imports nothing.
"""
