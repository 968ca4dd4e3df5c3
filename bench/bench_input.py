"""Peak memory of parsing one feed entry with a 10 MB title and a 10 MB summary.

``parse_feed`` as the parse worker runs it, in a fresh interpreter per run;
peak RSS is the process's ``ru_maxrss``. "cut" is the code as shipped (raw text
cut to 20 x the field's limit before markup is stripped); "uncut" sets that
factor to a billion, i.e. the whole 10 MB goes through the text cleaning, as
before. Medians of ``--runs``. Only prints.

    .venv/bin/python bench/bench_input.py [--runs 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from typing import Any

from _common import REPO, emit, machine, med, run_worker, table

WORDS = 2_000_000  # "word " x 2 M = 10 MB


def one_run(mode: str) -> dict[str, Any]:
    import bot.parsing.feeds as feeds

    if mode == "uncut":
        feeds.RAW_TEXT_FACTOR = 10**9
    text = "word " * WORDS
    body = (f'<rss version="2.0"><channel><title>t</title><item><guid>1</guid>'
            f"<title>{text}</title><description>{text}</description></item>"
            "</channel></rss>").encode()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    parsed = feeds.parse_feed(body, {"content-type": "application/rss+xml"}, "https://a.test/")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    item = parsed.items[0]
    return {"mode": mode, "peak_mb": peak, "before_parse_mb": before,
            "title_chars": len(item.title), "summary_chars": len(item.summary)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", choices=("cut", "uncut"))
    args = parser.parse_args()
    if args.worker:
        emit(one_run(args.worker))
        return
    print(machine())
    rows = []
    for mode in ("uncut", "cut"):
        runs = [run_worker(Path(__file__), ["--worker", mode], timeout=600)
                for _ in range(args.runs)]
        print(mode, [round(r["peak_mb"], 1) for r in runs])
        rows.append([mode, med(runs, "before_parse_mb"), med(runs, "peak_mb"),
                     runs[0]["title_chars"], runs[0]["summary_chars"]])
    print(table(["mode", "RSS before parse MB", "peak RSS MB (median)", "title chars",
                 "summary chars"], rows))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
