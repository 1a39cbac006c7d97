"""What the pen's strokes cost the handler (issue 42: a /read with strokes costs no more handler CPU than
the same drawing without): handle() in this process, one torch thread as in a worker, on 4-digit numbers
of writers 21-30 written apart on the page's canvas (bench/canvas_body.py; seed 0 is `make bench`'s
/read), each sent as the picture alone and with its strokes, the two in turn (toolkit.alternate) so both
see the same moments of a noisy machine. CPU time per /read, median of --rounds.

    python -m bench.strokes_cpu --model-dir model/default

Prints each drawing's candidate pieces (what the model reads: handler/segment.py) and CPU both ways; the
range over the drawings that are as many pieces both ways (what is left there is the strokes' own checks,
docs/performance.md); then the target: all the drawings' CPU with strokes over without.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench import toolkit
from bench.canvas_body import number_data_url
from handler.segment import read_candidates


def cpu_ms(instance, body: bytes) -> float:
    """One handle() of a /read as the web app sends it (a part named number-0: web/batching.py)."""
    return toolkit.handle_seconds(instance, [{"number-0": body}], 1, time.thread_time)[0] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=toolkit.DEFAULT_MODEL_DIR)
    parser.add_argument("--drawings", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    instance = toolkit.handler(args.model_dir.resolve())
    print(f"handle() CPU per /read, ms (median of {args.rounds}, one torch thread), 4 digits written apart:")
    print(f"{'seed':>4} {'number':>6} {'pieces':>13} {'picture':>8} {'strokes':>8} {'ratio':>6}")
    totals, uncut = {"picture": 0.0, "strokes": 0.0}, []
    for seed in range(args.drawings):
        (picture, label), (strokes, _) = number_data_url(4, seed), number_data_url(4, seed, strokes=True)
        pieces = [len(read_candidates(body).images) for body in (picture, strokes)]
        runs = {
            "picture": lambda b=picture: cpu_ms(instance, b),
            "strokes": lambda b=strokes: cpu_ms(instance, b),
        }
        ms = {name: statistics.median(v) for name, v in toolkit.alternate(runs, args.rounds).items()}
        for name in totals:
            totals[name] += ms[name]
        ratio = ms["strokes"] / ms["picture"]
        if pieces[0] == pieces[1]:  # nothing for the cutter: what is left is the strokes' own checks
            uncut.append(ratio)
        both = f"{ms['picture']:8.2f} {ms['strokes']:8.2f} {ratio:6.2f}"
        print(f"{seed:>4} {label:>6} {pieces[0]:>6} -> {pieces[1]:<4} {both}")
    if uncut:
        print(f"drawings the picture's cutter has nothing to do with ({len(uncut)}): strokes / picture "
              f"{min(uncut):.2f}-{max(uncut):.2f}x, median {statistics.median(uncut):.2f}x")  # fmt: skip
    overall = totals["strokes"] / totals["picture"]
    met = overall <= 1.0
    print(f"target: CPU of all {args.drawings} /reads with strokes / without: {overall:.2f}x (<= 1.00x) "
          f"{'met' if met else 'MISSED'}")  # fmt: skip
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
