"""The design this project started from, kept as the baseline `make bench` compares against: a Flask app
on Flask's threaded development server. Each request's body, the page's canvas data URL, is base64-decoded
and written to temp.jpg, read back with OpenCV in grayscale, resized to 28x28 and put through a LeNet
(eager PyTorch, torch's default threads), and the digit goes back as text.

    python -m bench.flask_baseline --port 5598          # POST /predict with a data URL

Kept as it was, faults included: every request writes the same temp.jpg (in the working directory
serving() gives it), so concurrent requests may read each other's drawing or half of one; a drawing
that fails to read is Flask's 500, which wrk counts as an error. Its weights are untrained: they change
no cost, and nothing reads its answers. bench/latency.py starts it beside the real stack (naive_server
.serving with this module) and compares error-free throughput.
"""

import argparse
import base64

import cv2
import torch
from flask import Flask, request

from model import lenet

app = Flask(__name__)
net = lenet(10).eval()


@app.post("/predict")
def predict():
    data_url = request.get_data(as_text=True)
    with open("temp.jpg", "wb") as file:
        file.write(base64.b64decode(data_url.split(",", 1)[1]))
    image = cv2.resize(cv2.imread("temp.jpg", cv2.IMREAD_GRAYSCALE), (28, 28))
    with torch.no_grad():
        digit = net(torch.from_numpy(image).float().div(255)[None, None]).argmax().item()
    return str(digit)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="ignored: the baseline's weights are its own (untrained)")
    parser.add_argument("--port", type=int, default=5598)
    args = parser.parse_args()
    print(f"flask baseline on http://127.0.0.1:{args.port}", flush=True)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
