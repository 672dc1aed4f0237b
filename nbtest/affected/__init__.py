"""Affected-only runs (--nbtest-affected): the cache of what each notebook used (store), the
fingerprints it compares (fingerprint), the in-kernel tracker (tracker), the pytest session
(session) and `nbtest affected` (cmd).

Importing this package imports nothing: a kernel imports `nbtest.affected.tracker` alone.
"""
