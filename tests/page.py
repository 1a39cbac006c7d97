"""The canvas page in a real Chromium (Debian's, driven by Playwright): open it, draw on it with a mouse or a
finger along real pen strokes, read its answer. The fixtures that launch Chromium are in tests/conftest.py."""

import base64
import io
import json
import os
import random
import re
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
# The page's drawing space, which is also the size of the image it sends (web/static/js/drawing.js).
_DRAWING_JS = (ROOT / "web" / "static" / "js" / "drawing.js").read_text()
PAGE_CANVAS = tuple(
    int(re.search(rf"const {name} = (\d+);", _DRAWING_JS).group(1)) for name in ("WIDTH", "HEIGHT")
)
INK_PIXELS = """() => {
  const c = document.getElementById("canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let ink = 0, checksum = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 128) ink++;
    checksum = (checksum * 31 + d[i]) % 1000000007;
  }
  return {ink, checksum, width: c.width, height: c.height, cssWidth: c.clientWidth, cssHeight: c.clientHeight};
}"""

CANVAS_BOX = """() => {
  const c = document.getElementById("canvas"), b = c.getBoundingClientRect();
  return {x: b.left + c.clientLeft, y: b.top + c.clientTop, width: c.clientWidth, height: c.clientHeight};
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


def on_screen(
    page, drawing: pendigits.Drawing, width: int = pendigits.CANVAS
) -> list[list[tuple[float, float]]]:
    """The drawing's strokes mapped onto the canvas as it sits on screen. A drawing made for a canvas
    `width` x 280 wide (a pen digit's 280, a number's 560: train/numbers.py) sits in the middle of the
    page's 560x280."""
    box = page.evaluate(CANVAS_BOX)
    k = box["height"] / PAGE_CANVAS[1]
    left = (PAGE_CANVAS[0] - width) / 2
    return [[(box["x"] + (left + x) * k, box["y"] + y * k) for x, y in stroke] for stroke in drawing.strokes]


def draw_stroke_with_mouse(page, stroke) -> None:
    page.mouse.move(*stroke[0])
    page.mouse.down()
    for point in stroke[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def draw_with_mouse(page, drawing, width: int = pendigits.CANVAS) -> None:
    for stroke in on_screen(page, drawing, width):
        draw_stroke_with_mouse(page, stroke)


def draw_number_with_mouse(page, digits: list[pendigits.Drawing]) -> None:
    """A number as train/numbers.py place() lays it out on a 560x280 canvas: digit by digit, stroke by stroke."""
    for digit in digits:
        draw_with_mouse(page, digit, PAGE_CANVAS[0])


def draw_with_finger(page, cdp, drawing) -> None:
    """Touch events as a phone's screen sends them (Chromium turns them into pointer events)."""
    for stroke in on_screen(page, drawing):
        x, y = stroke[0]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for x, y in stroke[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def settled(page) -> dict:
    """Wait until the page has its answer (aria-busy is true from the first stroke until then). number:
    the number read (None when none was: nothing yet, an error, or a piece that is not a digit); text:
    what the answer shows ("42", "4✗", "✗")."""
    page.wait_for_selector("#answer[aria-busy=false]", timeout=20000)
    return page.evaluate(
        """() => ({
          number: document.getElementById("result").dataset.number ?? null,
          text: document.getElementById("result").textContent,
          state: document.getElementById("answer").dataset.state ?? null,
          summary: document.getElementById("summary").textContent,
          message: document.getElementById("message").textContent,
          reason: document.getElementById("message").dataset.reason ?? null,
          details: !document.getElementById("details").hidden,
          pieces: document.querySelectorAll("#pieces .piece").length,
          boxes: document.querySelectorAll("#boxes .box").length,
        })"""
    )


def shown_text(answer: dict) -> str:
    """What the page shows for a /read answer: its digits, a piece that is not a digit as ✗."""
    return "".join("✗" if d["digit"] is None else str(d["digit"]) for d in answer["digits"])


def sent_drawing(request) -> tuple[str, list | None]:
    """What a /read request carried: the image's data URL (canvas.toDataURL()) and the strokes beside it,
    as JSON {"image", "strokes"}; None for strokes when it went as the data URL alone, as text."""
    if request.post_data.startswith("{"):
        assert request.headers["content-type"] == "application/json"
        sent = json.loads(request.post_data)
        return sent["image"], sent["strokes"]
    return request.post_data, None


def sent_image(request) -> Image.Image:
    """The PNG a /read request carried."""
    header, encoded = sent_drawing(request)[0].split(",", 1)
    assert header == "data:image/png;base64", header
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def read_requests(v: Visit) -> list:
    return [r for r in v.requests if r.url.startswith(v.origin + "/read")]


def crafted_piece(probabilities: dict[int, float], box=(200, 60, 120, 160), digit: int | None = -1) -> dict:
    """One digit of a /read answer as the handler writes it, with chosen probabilities (the rest share what is
    left); digit None: judged not a digit."""
    rest = (1 - sum(probabilities.values())) / (10 - len(probabilities))
    p = [probabilities.get(d, rest) for d in range(10)]
    return {
        "digit": max(range(10), key=p.__getitem__) if digit == -1 else digit,
        "probabilities": p,
        "box": list(box),
        "input_28x28": base64.b64encode(bytes(784)).decode(),
    }


def crafted_answer(*pieces: dict) -> dict:
    """A /read answer of these pieces, as the handler writes it (no ticket: the page offers feedback, which
    the tests that craft answers do not send)."""
    read = all(piece["digit"] is not None for piece in pieces)
    number = "".join(str(piece["digit"]) for piece in pieces) if read else None
    return {"number": number, "digits": list(pieces), "version": "1.0"}
