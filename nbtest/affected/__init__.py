"""Affected-only runs (--nbtest-affected): the cache of what each notebook used (store), the
fingerprints it compares (fingerprint), the pytest session (session) and `nbtest affected`
(cmd). What the kernel runs (the tracker and its hooks) is nbtest.inkernel's.

Importing this package imports nothing.
"""
