"""The canvas page in a real Chromium (Debian's, driven by Playwright): open it, draw on it with a mouse or a
finger along real pen strokes, read its answer. The fixtures that launch Chromium are in tests/conftest.py."""

import base64
import io
import os
import random
from pathlib import Path

from PIL import Image

from tests.stack import ROOT
from train import pendigits

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Chromium's background services (updates, sync, QUIC probes) try the internet; this network is closed.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts" / "browser"
DESKTOP = {"viewport": {"width": 900, "height": 720}, "device_scale_factor": 2}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
INK_PIXELS = """() => {
  const c = document.getElementById("canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let ink = 0, checksum = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 128) ink++;
    checksum = (checksum * 31 + d[i]) % 1000000007;
  }
  return {ink, checksum, width: c.width, cssWidth: c.clientWidth};
}"""

CANVAS_BOX = """() => {
  const c = document.getElementById("canvas"), b = c.getBoundingClientRect();
  return {x: b.left + c.clientLeft, y: b.top + c.clientTop, side: c.clientWidth};
}"""


class Visit:
    """One browser context on the page, recording every request and every script or CSP error."""

    def __init__(self, browser, url: str, options: dict):
        self.origin = url.rstrip("/")
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.requests, self.problems = [], []
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("console", self._console)
        self.page.goto(url)
        self.page.wait_for_selector("#version:not([disabled])")

    def _console(self, message):
        # "Failed to load resource: 422" is the browser logging an answer we asked for; CSP is not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")

    def outside_requests(self) -> list[str]:
        return [r.url for r in self.requests if not r.url.startswith(self.origin + "/")]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


def pen_drawings(count: int, seed: int = 0) -> list[pendigits.Drawing]:
    rng = random.Random(seed)
    digits = rng.sample(pendigits.held_out(pendigits.load()), count)
    return [pendigits.layout(digit, rng) for digit in digits]


def on_screen(page, drawing: pendigits.Drawing) -> list[list[tuple[float, float]]]:
    """The drawing's strokes (280x280 canvas pixels) mapped onto the canvas as it sits on screen."""
    box = page.evaluate(CANVAS_BOX)
    k = box["side"] / pendigits.CANVAS
    return [[(box["x"] + x * k, box["y"] + y * k) for x, y in stroke] for stroke in drawing.strokes]


def draw_stroke_with_mouse(page, stroke) -> None:
    page.mouse.move(*stroke[0])
    page.mouse.down()
    for point in stroke[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def draw_with_mouse(page, drawing) -> None:
    for stroke in on_screen(page, drawing):
        draw_stroke_with_mouse(page, stroke)


def draw_with_finger(page, cdp, drawing) -> None:
    """Touch events as a phone's screen sends them (Chromium turns them into pointer events)."""
    for stroke in on_screen(page, drawing):
        x, y = stroke[0]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for x, y in stroke[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def settled(page) -> dict:
    """Wait until the page has its answer (aria-busy is true from the first stroke until then)."""
    page.wait_for_selector("#answer[aria-busy=false]", timeout=20000)
    return page.evaluate(
        """() => ({
          digit: document.getElementById("result").dataset.digit ?? null,
          text: document.getElementById("result").textContent,
          summary: document.getElementById("summary").textContent,
          message: document.getElementById("message").textContent,
          details: !document.getElementById("details").hidden,
        })"""
    )


def sent_image(request) -> Image.Image:
    """The PNG a /predict request carried (the page sends canvas.toDataURL() as text)."""
    header, encoded = request.post_data.split(",", 1)
    assert header == "data:image/png;base64", header
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def predict_requests(v: Visit) -> list:
    return [r for r in v.requests if r.url.startswith(v.origin + "/predict")]
