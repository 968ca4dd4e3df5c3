"""What reading Chinese and Russian costs: memory of the models loaded on first use, and
time per item, against English text, which never loads them.

Run: .venv/bin/python bench/bench_languages.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.storylines.facets import read_item
from bot.storylines.text import tokens

TEXTS = {
    "en": "Wang Yi arrives in Moscow for talks with Lavrov. The Chinese foreign minister "
          "will prepare Putin's visit to China next month.",
    "ru": "Ван И прибыл в Москву на переговоры с Лавровым. Министр иностранных дел Китая "
          "подготовит визит Путина в Китай в следующем месяце.",
    "zh": "王毅抵达莫斯科同拉夫罗夫会谈。中国外长将为普京下月访华做准备。",
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def per_item_us(text: str, n: int = 2000) -> float:
    runs = []
    for _ in range(5):
        start = time.process_time()
        for k in range(n):
            t = f"{text} {k}"  # no cache hit: a new text each time
            tokens(t)
            read_item(t)
        runs.append((time.process_time() - start) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    base = rss_mb()
    print(f"process after import: {base:.0f} MB")
    for lang, text in TEXTS.items():
        before = rss_mb()
        tokens(text)
        read_item(text)
        loaded = rss_mb()
        us = per_item_us(text)
        print(f"{lang}: first text loads {loaded - before:5.1f} MB; "
              f"tokens + read_item {us:6.0f} us per item (CPU, median of 5)")
    print(f"process at the end: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
