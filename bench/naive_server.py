"""The naive baseline: one aiohttp process that does all of it per request, no TorchServe.

    python -m bench.naive_server --model build/convnet/model.pt --port 5599

POST /predict with the page's body (a canvas data URL) decodes and preprocesses it with the same
handler/mnist_form.py's preprocess(), runs the same TorchScript model and answers the handler's JSON shape. Everything
runs inline on the event loop of one process: what a first prototype would be. bench/latency.py measures
it beside the real stack (serving() starts it), so the price (or gain) of browser -> aiohttp -> TorchServe
-> worker is a ratio.
"""

import argparse
import base64
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch
from aiohttp import web

from handler.errors import InputError
from handler.mnist_form import preprocess
from tests.stack import ROOT, free_port_base

warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)

MODEL = web.AppKey("model", torch.jit.ScriptModule)


async def predict(request: web.Request) -> web.Response:
    try:
        image = preprocess(await request.read())
    except InputError as e:
        return web.json_response({"error": str(e)}, status=e.status)
    with torch.inference_mode():
        probabilities = torch.softmax(request.app[MODEL](torch.from_numpy(image)[None, None]), dim=1)[0]
    return web.json_response(
        {
            "digit": int(probabilities.argmax()),
            "probabilities": probabilities.tolist(),
            "input_28x28": base64.b64encode((image * 255).round().astype(np.uint8)).decode(),
        }
    )


def init_app(model_path: str, threads: int) -> web.Application:
    # here: bench/latency.py imports serving() alone
    from handler.mnist_handler import for_inference, set_threads

    set_threads(threads)
    # The model as the handler runs it (frozen and optimized), so the two differ only in what serves them.
    model = for_inference(torch.jit.load(model_path, map_location="cpu"))
    with torch.inference_mode():
        model(torch.zeros(1, 1, 28, 28))  # the first call allocates; pay it before serving
    app = web.Application(client_max_size=1024 * 1024)
    app[MODEL] = model
    app.router.add_post("/predict", predict)
    return app


@contextlib.contextmanager
def serving(model_dir: Path, log: Path, module: str = "bench.naive_server"):
    """This server (or `module`'s: bench/flask_baseline.py) in a process of its own serving model_dir on a
    free port, in log's directory, its output appended to log: yields (its /predict URL, its pid) once it
    answers."""
    port = free_port_base(1)
    url = f"http://127.0.0.1:{port}/predict"
    command = [sys.executable, "-m", module, "--model", str(model_dir / "model.pt"), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = open(log, "ab")
    naive = subprocess.Popen(command, cwd=log.parent, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while naive.poll() is None and time.monotonic() < deadline:
            try:  # up once it answers a POST at all (an empty body's 400 counts)
                urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{url} did not come up in 60 s (exit status {naive.returncode})")
        yield url, naive.pid
    finally:
        naive.terminate()
        naive.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="TorchScript model.pt")
    parser.add_argument("--port", type=int, default=5599)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the handler uses 1)")
    args = parser.parse_args()
    print(f"naive server on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(
        init_app(args.model, args.threads), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
