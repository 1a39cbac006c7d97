"""Where the web app and the TorchServe worker spend their CPU under load: py-spy samples both while 16 wrk
clients post the benchmark's canvas to /predict, and each process's samples are shared out by the innermost
phase they were in (docs/performance.md, "Where the CPU goes under load").

    pip install py-spy && python -m bench.profile_load [--model-dir model/default] [--seconds 15]

py-spy is no project dependency: a profiler, run by hand. Its sampling takes CPU from the same cores, so
the shares count, not the request rate.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from bench import toolkit
from bench.canvas_body import canvas_data_url

# (phase, a function of a sample's frames, innermost last) in order: a sample counts for the first that fits
WORKER = [
    ("the model's forward pass", lambda f: any("MnistHandler._run" in x for x in f) and "module.py" in f[-1]),
    ("MNIST's form (to_mnist)", lambda f: any(x.startswith("to_mnist ") for x in f)),
    ("PNG decode", lambda f: any(x.startswith("decode ") and "handler/decode.py" in x for x in f)),
    ("the ink map", lambda f: any(x.startswith("ink_map ") for x in f)),
    ("the body: base64, JSON, strokes", lambda f: any("payload_to_drawing" in x or "pen.py" in x for x in f)),
    ("answers and their JSON", lambda f: any("postprocess" in x or "answers.py" in x for x in f)),
    ("TorchServe's logging and metrics", lambda f: any("logging/" in x or "ts/metrics" in x for x in f)),
    ("TorchServe's worker protocol", lambda f: "model_service_worker.py" in f[-1] or "otf_message" in f[-1]),
]
WEB = [
    ("socket writes", lambda f: "_writelines" in f[-1]),
    ("the event loop (uvloop)", lambda f: f[-1].startswith("run_app ")),
    ("the ticket's hash", lambda f: any("drawing_hash" in x for x in f)),
    (
        "our views and middlewares (web/), and what they call",
        lambda f: any(" (web/" in x for x in _served(f)),
    ),
    ("aiohttp around the views", lambda f: any("aiohttp" in x for x in f)),
]


def _served(frames: list) -> list:
    """The frames below aiohttp's run_app: serving, not web/app.py's start-up frames above it."""
    starts = [i for i, frame in enumerate(frames) if frame.startswith("run_app ")]
    return frames[starts[0] + 1 :] if starts else []


def shares(raw: Path, phases: list) -> tuple[int, Counter]:
    """py-spy's raw output (a line per distinct stack: frames joined by ';', then its count) by phase."""
    found, total = Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, total = stack.split(";"), total + int(count)
        found[next((name for name, fits in phases if fits(frames)), "other")] += int(count)
    return total, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("model/default"))
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or sys.exit("error: py-spy is not installed: pip install py-spy")
    body, out = canvas_data_url(), Path(tempfile.mkdtemp(prefix="profile-"))
    with toolkit.own_stack(args.model_dir) as stack:
        worker = psutil.Process(toolkit.frontend_pid(stack.run_dir)).children(recursive=True)[0].pid
        url, plain = stack.web_url + "/predict", {"Content-Type": "text/plain"}
        toolkit.wrk(url, body, plain, 16, 3)  # warm
        record = [spy, "record", "-r", "200", "-d", str(args.seconds), "-f", "raw", "--nonblocking"]
        spies = [
            subprocess.Popen([*record, "-o", str(out / name), "-p", str(pid)], stdout=subprocess.DEVNULL)
            for name, pid in (("web", stack.web.pid), ("worker", worker))
        ]
        time.sleep(1)  # both sampling before the load starts
        run = toolkit.wrk(url, body, plain, 16, args.seconds - 2)
        for process in spies:
            process.wait()
    print(f"16 clients: {run.rps:.0f} req/s (py-spy beside them), {run.errors} errors; raw samples in {out}")
    for name, phases in (("worker", WORKER), ("web", WEB)):
        total, found = shares(out / name, phases)
        print(f"\n{name}: {total} samples")
        for phase, count in found.most_common():
            print(f"  {count / total:6.1%}  {phase}")


if __name__ == "__main__":
    main()
