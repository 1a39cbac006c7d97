"""The handler's CPU per drawing, phase by phase, in this process on one torch thread as in a worker:
what `make bench` prints beside the stack's totals (issue 40: where a drawing's cost goes).

    python -m bench.handler_phases --model-dir build/convnet

Phases, each the serving code itself on the page's body (bench/canvas_body.py): the data URL's base64
(decode.payload_to_bytes), the PNG (decode.decode), the ink map (ink.ink_map), the MNIST form
(mnist_form.to_mnist), the model at the batch sizes the worker sees (frozen and optimized as the handler
runs it), the answer (answers.digit_answer and its JSON), and handle() whole at batch 4 (TorchServe's
per-request work in the handler included). CPU time (time.thread_time), median of --rounds, per drawing.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench import toolkit
from bench.canvas_body import canvas_data_url
from handler.answers import digit_answer
from handler.decode import decode, payload_to_bytes
from handler.ink import ink_map
from handler.mnist_form import to_mnist

BATCHES = (1, 4, 8)


def cpu_ms(work, rounds: int, per: int = 1) -> float:
    """Median CPU ms of work() over `rounds` calls, divided by `per` (drawings per call)."""
    seconds = []
    for _ in range(rounds):
        start = time.thread_time()
        work()
        seconds.append(time.thread_time() - start)
    return statistics.median(seconds) * 1000 / per


def phases(model_dir: Path, body: bytes, rounds: int) -> dict[str, float]:
    instance = toolkit.handler(model_dir)  # one torch thread, the model as the handler runs it
    png = payload_to_bytes(body)
    pixels = decode(png)
    ink = ink_map(pixels)
    image = to_mnist(ink)
    out = {
        "base64": cpu_ms(lambda: payload_to_bytes(body), rounds),
        "png decode": cpu_ms(lambda: decode(png), rounds),
        "ink map": cpu_ms(lambda: ink_map(pixels), rounds),
        "mnist form": cpu_ms(lambda: to_mnist(ink), rounds),
    }
    for n in BATCHES:  # the handler's own model call (outputs and features, softmax, to numpy)
        batch = np.repeat(image[None], n, axis=0)
        out[f"model, batch {n}"] = cpu_ms(lambda b=batch: instance._run(b), rounds, n)
    probabilities = instance._run(image[None])[0][0]
    out["answer + JSON"] = cpu_ms(lambda: json.dumps(digit_answer(image, probabilities, "1.0")[1]), rounds)
    rows = [{"data": body}] * 4
    out["handle() whole, batch 4"] = (
        statistics.median(toolkit.handle_seconds(instance, rows, rounds, time.thread_time)) * 250
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=toolkit.DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    figures = phases(args.model_dir.resolve(), canvas_data_url(), args.rounds)
    print(f"handler CPU per drawing, by phase (median of {args.rounds}, one torch thread):")
    for name, ms in figures.items():
        print(f"  {name:<26}{ms:8.3f} ms")


if __name__ == "__main__":
    main()
