"""The GPU side: free memory and the preflight (probe), the NVML and nvidia-smi readers
(nvidia), `nbtest preflight` (cmd) and the in-kernel peak recorder (peak).

Importing this package imports nothing: a kernel imports `nbtest.gpu.peak` alone.
"""
