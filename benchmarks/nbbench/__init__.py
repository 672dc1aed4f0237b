"""nbbench: what the benchmark scripts (bench.py, bench_preload.py, bench_nbdev.py) are made of.

- the sets: sets.py (notebook generators: A-I, H and H', the nbdev-like project)
- the tools compared: tools.py (command lines of nbtest and its peers, and their checks)
- the runner: runner.py (timing, RSS and USS sampling, Case and its medians), venv.py (the
  bench venv's set-up and the re-exec into it), probes.py (kernel, import and fork floors)
- the comparisons: compare.py (bench.py; its measurements: measure.py), preload.py
  (bench_preload.py), nbdev_suite.py (bench_nbdev.py)
- the report: figures.py (derived figures, acceptance), report.py (bench.py's RESULTS.md
  page), sections.py (the other scripts' sections), markdown.py (formats, writing RESULTS.md
  below and above its marker), machine.py (machine, versions, commit)

Standard library only at import: psutil, nbtest and the tools come from .venv-bench, under
which every script re-executes itself before measuring.
"""
