"""What runs inside the kernel (and in the fork template that becomes kernels): the startup
cell's code (startup), the affected tracker and its hooks (tracker, tracker_hooks), the import
timer (imports) and the profile's counters (profiling), the GPU peak recorder (gpu_peak), the
this_tests recorder (recorder) and the template's preloading (preload).

Standard library only (tests/test_layout.py checks it): these modules are imported into every
kernel, whatever the notebook's environment holds, and never import the harness.
"""
