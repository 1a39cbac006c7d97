"""What a /read costs in candidate pieces (each a to_mnist and a model input): the unit /read is charged by.

    python -m bench.read_pieces              # 3,000 numbers of writers 1-20, and the zigzag strips
    python -m bench.read_pieces --seed 1

No timing, no model: handler.segment.read_candidates in-process over numbers built by train/numbers.py
from the trainable writers' pen digits, counting len(candidates.images) by spacing and by number length,
then the one-stroke zigzags of bench/worst_body.py (the dearest /read bodies). The figures and the unit
chosen from them (web/ratelimit.py READ_PIECES_PER_TOKEN) are in docs/limits.md.
"""

import argparse
import random
from collections import defaultdict

import numpy as np

from bench.worst_body import pieces, zigzags
from train import numbers, pendigits


def row(name: str, counts: list) -> str:
    p50, p90, top = np.percentile(counts, [50, 90, 100])
    return f"  {name:<12}{len(counts):6d}{np.mean(counts):8.1f}{p50:6.0f}{p90:6.0f}{top:6.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits = pendigits.trainable(pendigits.load())
    by_spacing, by_length, four = defaultdict(list), defaultdict(list), []
    for number in numbers.numbers(digits, args.count, random.Random(args.seed)):
        n = pieces(number.png)
        by_spacing[number.spacing].append(n)
        by_length[len(number.label)].append(n)
        if len(number.label) == 4:
            four.append(n)
    print("candidate pieces per number      count    mean   p50   p90   max")
    for spacing, counts in by_spacing.items():
        print(row(spacing, counts))
    for length in sorted(by_length):
        print(row(f"{length} digits", by_length[length]))
    print(row("all", [n for counts in by_spacing.values() for n in counts]))
    print(f"4-digit numbers, every spacing: median {np.median(four):.0f} pieces (the unit of /read's limit)")
    for name, body in zigzags().items():
        print(f"  {name}: {pieces(body)} pieces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
