"""What nbtest's own tests build and share besides fixtures (those stay in tests/conftest.py).

- notebooks.py: notebooks and outputs written and read back (`write_notebook`, `stored`, ...);
- processes.py: the `nbtest` command, leftover kernels (`check_no_kernel_left`), waits;
- pytest_sessions.py: real pytest sessions in a subprocess and their outcomes (`run_pytest`);
- registry_project.py: the registry tests' acmelib project;
- fake_nvidia_smi.py: the stand-in `nvidia-smi` executable and its scenes;
- forks.py: the fork tests' config and templates; extras.py: skips for missing extras;
- spawn_guard.py: the fast tier's guard (no process outside the `spawns` tier).
"""
