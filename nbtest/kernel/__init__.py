"""The kernel side: start a kernel (launch), fork it from a warm template (forkserver, the
harness's handle; template, the process), the jupyter_client provisioner that chooses, what
the template preloads, and the startup code each kernel runs first (what runs inside the
kernel is nbtest.inkernel's).

Importing this package imports nothing: the modules are imported where they are used.
"""
