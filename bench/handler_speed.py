"""The handler's time per image in-process, by stage, against an older version of it, in one run.

    python -m bench.handler_speed                       # this tree against main, batch 4
    python -m bench.handler_speed --against HEAD~3 --rounds 400
    python -m bench.handler_speed --model-dir build/nondigit --against-model-dir build/convnet   # two models

No servers: TorchServe's MockContext and MnistHandler.handle() on a batch of the body `make bench`
sends (bench/canvas_body.py canvas_data_url: a 280x280 RGBA PNG data URL). The older version is
the preprocessing as it is at --against (read with `git show`) plus the model as TorchScript loads
it (no freeze). With --against-model-dir, "old" is instead this tree's handler serving that model
(e.g. ten outputs against eleven: what "not a digit" costs). Old and new alternate, round after round, so both see the same moments of a noisy
machine: compare the ratios, not the absolute figures.
"""

import argparse
import importlib
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from bench.canvas_body import canvas_data_url
from bench.latency import DEFAULT_MODEL_DIR
from handler import decode, errors, ink, mnist_form
from handler.mnist_handler import MnistHandler
from tests.handler_context import Context
from tests.stack import ROOT

warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)

# Wall time by default. --clock cpu counts only this thread's CPU time: on a machine shared with other
# work it leaves out the time the scheduler gave to others (torch runs on this one thread, as in a worker).
clock = time.perf_counter


def pipeline(decode, errors, ink, mnist_form) -> SimpleNamespace:
    """The preprocessing's modules as one, by the names handler/preprocess.py held them in before the
    split (stages, preprocess_equivalence)."""
    return SimpleNamespace(
        payload_to_bytes=decode.payload_to_bytes,
        decode=decode.decode,
        ink_map=ink.ink_map,
        to_mnist=mnist_form.to_mnist,
        preprocess=mnist_form.preprocess,
        InputError=errors.InputError,
    )


new = pipeline(decode, errors, ink, mnist_form)


def preprocess_at(rev: str):
    """The preprocessing as it is at git revision `rev`, imported as modules of its own: handler/preprocess.py
    where `rev` has it, else its handler/ package (relative imports) under another name."""

    def show(path: str) -> bytes:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True
        ).stdout

    files = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:handler"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split()
    tag = re.sub(r"\W", "_", rev)
    with tempfile.TemporaryDirectory(prefix="preprocess-") as folder:
        if "preprocess.py" in files:
            path = Path(folder) / f"preprocess_{tag}.py"
            path.write_bytes(show("handler/preprocess.py"))
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        package = Path(folder) / f"handler_{tag}"
        package.mkdir()
        for name in (f for f in files if f.endswith(".py")):
            (package / name).write_bytes(show(f"handler/{name}"))
        sys.path.insert(0, folder)
        try:
            names = ("decode", "errors", "ink", "mnist_form")
            return pipeline(*(importlib.import_module(f"{package.name}.{name}") for name in names))
        finally:
            sys.path.remove(folder)


def handler(model_dir: Path, module=None) -> MnistHandler:
    """The real handler; with `module`, one that preprocesses with that module and runs the model
    unfrozen, as the handler did before it froze it."""
    context = Context(model_dir)
    instance = MnistHandler() if module is None else _OldHandler(module)
    instance.initialize(context)
    instance.mock_context = context
    if module is not None:
        instance.model = torch.jit.load(str(model_dir / "model.pt"), map_location="cpu").eval()
    return instance


class _OldHandler(MnistHandler):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def preprocess(self, data):
        return [(False, [self.module.preprocess(row["data"])]) for row in data]


def stages(module, model, body: bytes, batch: int) -> dict:
    """Seconds per image of each stage of preprocess() and of the model, for one batch."""
    times, images = dict.fromkeys(("base64", "decode", "ink map", "crop..centre", "model"), 0.0), []
    for _ in range(batch):
        t0 = clock()
        data = module.payload_to_bytes(body)
        t1 = clock()
        image = getattr(module, "decode", module.open_image)(data)  # older versions: PIL images
        t2 = clock()
        ink = module.ink_map(image)
        t3 = clock()
        images.append(module.to_mnist(ink))
        t4 = clock()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=False):
            times[name] += seconds / batch
    t0 = clock()
    with torch.inference_mode():
        model(torch.from_numpy(np.stack(images)).unsqueeze(1))
    times["model"] = (clock() - t0) / batch
    return times


def handle_ms(instance: MnistHandler, body: bytes, batch: int, rounds: int) -> float:
    """Median ms per image of handle() on batches of `batch` copies of `body`."""
    return float(np.median(handle_seconds(instance, body, batch, rounds))) * 1000 / batch


def handle_seconds(instance: MnistHandler, body: bytes, batch: int, rounds: int) -> list[float]:
    rows = [{"data": body}] * batch
    seconds = []
    for _ in range(rounds):
        start = clock()
        instance.handle(rows, instance.mock_context)
        seconds.append(clock() - start)
    return seconds


def compare(
    model_dir: Path, against: str, batch: int, rounds: int, against_model_dir: Path | None = None
) -> dict:
    """Interleaved ms per image, {stage: (old, new)}: medians, and for handle() also the 10th percentile.
    On a busy machine a whole batch (~3 ms) is often cut by the scheduler where a stage (~0.1-0.3 ms)
    seldom is, so handle()'s median rises more than its stages' medians do."""
    body = canvas_data_url(0)
    old_module = preprocess_at(against) if against_model_dir is None else new
    old = handler(model_dir, old_module) if against_model_dir is None else handler(against_model_dir)
    current = handler(model_dir)
    samples = {}
    for _ in range(rounds):
        for name, module, instance in (("old", old_module, old), ("new", new, current)):
            for stage, seconds in stages(module, instance.model, body, batch).items():
                samples.setdefault(stage, {}).setdefault(name, []).append(seconds)
            seconds = handle_seconds(instance, body, batch, 1)[0] / batch
            samples.setdefault("handle()", {}).setdefault(name, []).append(seconds)
    results = {
        stage: tuple(float(np.median(by_name[name])) * 1000 for name in ("old", "new"))
        for stage, by_name in samples.items()
    }
    results["handle() p10"] = tuple(
        float(np.percentile(samples["handle()"][name], 10)) * 1000 for name in ("old", "new")
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--against", default="main", help="git revision of the old preprocessing")
    parser.add_argument("--against-model-dir", type=Path, help="old: this handler serving that model")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args()
    global clock
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    against_dir = args.against_model_dir.resolve() if args.against_model_dir else None
    results = compare(args.model_dir.resolve(), args.against, args.batch, args.rounds, against_dir)
    if against_dir:
        args.against = against_dir.name[:10]
    print(
        f"ms per image ({args.clock} time), batch {args.batch}, median of {args.rounds} interleaved rounds"
        " (noisy machine)"
    )
    print(f"{'stage':<14}{args.against:>10}{'this tree':>11}{'new/old':>9}")
    for stage, (old_ms, new_ms) in results.items():
        print(f"{stage:<14}{old_ms:10.3f}{new_ms:11.3f}{new_ms / old_ms:9.2f}")
    print("stages: median of each; handle(): the whole batch, median and 10th percentile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
