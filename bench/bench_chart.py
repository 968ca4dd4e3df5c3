"""What the ``charts`` extra costs: install size, import time, memory, time to draw.

Each run is a fresh interpreter (``--worker``) that measures, in order: its RSS
before anything is imported, the wall time of importing what ``chart_png`` needs
(matplotlib with the Agg backend, its Figure, dates and ticker modules), the
RSS after that, the first chart drawn (cold: fonts are loaded then), the median
of ten more, and the RSS at the end. The chart is the /timeline one: 60 days of
developments. The install size is the sum of the files of matplotlib and of the
packages it pulls that the bot does not need otherwise (numpy is a dependency of
the bot already), from their installed RECORD files.

    PYTHONPATH=. .venv/bin/python bench/bench_chart.py --runs 5
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, machine, median, run_worker

# What `pip install matplotlib` adds to a Storywatch environment (numpy is there already).
EXTRA = ("matplotlib", "pillow", "fonttools", "kiwisolver", "contourpy", "cycler",
         "pyparsing", "python-dateutil", "six", "tzdata")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker() -> None:
    rss0 = _rss_mb()
    started = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.figure
    import matplotlib.ticker

    imported = time.perf_counter() - started
    rss1 = _rss_mb()
    from bot.delivery.chart import chart_png

    counts = [(date(2026, 1, 1) + timedelta(days=n), (n * 7) % 4) for n in range(60)]
    t = time.perf_counter()
    png = chart_png(counts, "#1 Wang Yi visit to Moscow")
    first = time.perf_counter() - t
    again = []
    for _ in range(10):
        t = time.perf_counter()
        chart_png(counts, "#1 Wang Yi visit to Moscow")
        again.append(time.perf_counter() - t)
    emit({"import_s": imported, "rss_start_mb": rss0, "rss_imported_mb": rss1,
          "first_draw_s": first, "draw_s": median(again), "rss_end_mb": _rss_mb(),
          "png_bytes": len(png or b"")})


def installed_mb(names: tuple[str, ...]) -> tuple[float, list[str]]:
    total, found = 0, []
    for name in names:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        size = sum(f.size or 0 for f in dist.files or ())
        total += size
        found.append(f"{name} {dist.version}: {size / 1e6:.1f} MB")
    return total / 1e6, found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    print(machine())
    size, parts = installed_mb(EXTRA)
    print(f"installed by the charts extra: {size:.1f} MB ({'; '.join(parts)})")
    runs = [run_worker(Path(__file__), ["--worker"], timeout=300) for _ in range(args.runs)]
    for key, unit, scale in (("import_s", "ms", 1000), ("first_draw_s", "ms", 1000),
                             ("draw_s", "ms", 1000), ("rss_start_mb", "MB", 1),
                             ("rss_imported_mb", "MB", 1), ("rss_end_mb", "MB", 1),
                             ("png_bytes", "bytes", 1)):
        values = [r[key] * scale for r in runs]
        print(f"{key}: median {median(values):.1f} {unit} "
              f"(runs: {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
