"""Derived figures of bench.py's measurements, and the acceptance criteria of issue 7.

`analyse` turns the medians into kernel start/stop, per-cell overhead (two ways), set C's
overhead above the sleep and peak RSS; `acceptance` the rows met / not met / not measured.
Both read a measured (or --report-from loaded) measure.Bench.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Callable

from .markdown import fmt, fmt_mib
from .sets import CELLS_B, N_B, SLEEP_S

if TYPE_CHECKING:
    from .measure import Bench


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def analyse(bench: Bench) -> dict[str, Any]:
    k = bench.extra.get("kernels") or {}
    med = {key: (statistics.median(v) * 1000 if v else None) for key, v in k.items()}
    kstart = (statistics.median(k["start"]) + statistics.median(k["stop_graceful"])
              if k.get("start") and k.get("stop_graceful") else None)
    n_cells_b, n_cells_b1 = N_B * CELLS_B, N_B * 1
    percell = {}
    for tool in ("nbtest", "nbmake", "raw"):
        wb, wb1 = bench.med(f"B.{tool}"), bench.med(f"B1.{tool}")
        literal = ((wb - N_B * kstart) / n_cells_b * 1000
                   if wb is not None and kstart is not None else None)
        slope = ((wb - wb1) / (n_cells_b - n_cells_b1) * 1000
                 if wb is not None and wb1 is not None else None)
        percell[tool] = {"wall_B": wb, "wall_B1": wb1, "literal_ms": literal,
                         "slope_ms": slope}
    over: dict[str, float | None] = {}
    for t in ("nbtest", "nbmake", "floor"):
        wall_c = bench.med(f"C.{t}")
        over[t] = None if wall_c is None else wall_c - SLEEP_S
    warm = bench.extra.get("warm") or {}
    rss20 = bench.med("A.nbtest", "hwm")
    rss200 = bench.rss_case.median("hwm") if bench.rss_case.runs else None
    return {"kernel_ms": med, "kernel_start_s": kstart, "percell": percell,
            "overhead_C": over, "rss20": rss20, "rss200": rss200,
            "startup_warm_ms": (statistics.median(warm["startup_warm"]) * 1000
                                if warm.get("startup_warm") else None),
            "pass_warm_ms": (statistics.median(warm["pass_warm"]) * 1000
                             if warm.get("pass_warm") else None)}


def acceptance(bench: Bench, an: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    def verdict(value: float | None, ok: Callable[[float], bool]) -> str:
        return "not measured" if value is None else ("met" if ok(value) else "not met")

    rows = []
    for label, num, den, limit in (
            ("A serial: nbtest / nbmake", "A.nbtest", "A.nbmake", 0.25),
            ("A serial: nbtest / nbval-lax", "A.nbtest", "A.nbval", 0.35),
            ("A -n 2: nbtest -n 2 / nbmake -n 2", "A.nbtest-n2", "A.nbmake-n2", 0.25)):
        r = ratio(bench.med(num), bench.med(den))
        if r is not None:
            rows.append((label, fmt(r, 3), f"≤ {limit}", "met" if r <= limit else "not met"))
            continue
        # A tool failed some runs: say so, and give the ratio over its passing runs only.
        partial = ratio(bench.case(num).median_ok(), bench.case(den).median_ok())
        bad = [f"{bench.case(k).label}: {sum(not x['ok'] for x in bench.case(k).runs)} of "
               f"{len(bench.case(k).runs)} runs FAILED" for k in (num, den)
               if bench.case(k).failed]
        rows.append((label, f"{'; '.join(bad)}; over passing runs only: {fmt(partial, 3)}",
                     f"≤ {limit}", "not measured" if partial is None else
                     f"{'met' if partial <= limit else 'not met'} (provisional)"))
    oc = an["overhead_C"]
    r = ratio(oc["nbtest"], oc["nbmake"])
    rows.append(("C: nbtest overhead / nbmake overhead (above the 2 s sleep)",
                 f"{fmt(r, 3)} ({fmt(oc['nbtest'])} s / {fmt(oc['nbmake'])} s)", "≤ 0.5",
                 verdict(r, lambda v: v <= 0.5)))
    floor = ratio(oc.get("floor"), oc["nbmake"])
    rows.append(("C reference, not a tool: floor overhead / nbmake overhead (a bare plugin "
                 "that spawns the kernel at import, before pytest parses its options)",
                 f"{fmt(floor, 3)} ({fmt(oc.get('floor'))} s / {fmt(oc['nbmake'])} s)",
                 "—", "above 0.5: the C target is out of reach on this machine"
                 if floor is not None and floor > 0.5 else "reference"))
    pc = an["percell"]
    for how, field in (("wall − 5 × kernel start+stop, / 150 cells", "literal_ms"),
                       ("slope: (wall B − wall B1) / 145 cells", "slope_ms")):
        a, b = pc["nbtest"][field], pc["raw"][field]
        rows.append((f"B per-cell overhead, {how}: nbtest vs raw nbclient",
                     f"{fmt(a, 2)} ms vs {fmt(b, 2)} ms",
                     "nbtest ≤ raw", "not measured" if a is None or b is None
                     else ("met" if a <= b else "not met")))
    if an["rss200"] is None:
        rows.append(("Harness peak RSS: 200 notebooks − 20 notebooks",
                     f"20: {fmt_mib(an['rss20'])}; 200: not run (use --rss)", "≤ 20 MiB",
                     "not measured"))
    else:
        d = (an["rss200"] - an["rss20"]) / 2**20 if an["rss20"] is not None else None
        rows.append(("Harness peak RSS: 200 notebooks − 20 notebooks",
                     f"{fmt(d, 1)} MiB ({fmt_mib(an['rss200'])} − {fmt_mib(an['rss20'])})",
                     "≤ 20 MiB", verdict(d, lambda v: v <= 20)))
    return rows
