"""Output checks: compare stored and new outputs (compare), the sanitizers applied first
(sanitize) and writing the new outputs back (update).
"""
