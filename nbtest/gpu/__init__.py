"""The GPU side: free memory and the preflight (probe), the NVML and nvidia-smi readers
(nvidia), `nbtest preflight` (cmd) and the reader of the kernel's own peak (peak; the kernel
writes it with nbtest.inkernel.gpu_peak).

Importing this package imports nothing.
"""
