"""Canvas data sets: digits drawn onto a 280x280 canvas as the page draws them, sent as the page sends them
(a PNG data URL). Evaluation, benchmarks and tests all read these, so they live beside training's data.

  drawings()        real pen digits (train/pendigits.py), by default of writers 21-30, never trained on:
                    each laid out with a random brush of 8-20 px, a height of 35-85% of the canvas and a
                    random position (fixed seed), round caps and joins, antialiased, black on white.
  mnist_drawings()  MNIST's test digits drawn on canvases (train/mnist_canvas.py, the same renders that
                    training's test_canvas figure scores in-process).
  mnist_on_canvas() one MNIST digit, scaled and placed at random the way a person fills a canvas.
  nondigit_drawings() the held-out non-digit families (train/nondigits.py), the ones metrics.json measures.
"""

import base64
import random

import numpy as np
from PIL import Image

from train import mnist_canvas, nondigits, pendigits

# later: the held-out writers' second halves, after their first halves were trained on as feedback
# (scripts/pen_feedback.py).
WRITERS = {"held-out": pendigits.held_out, "trainable": pendigits.trainable, "later": pendigits.later}


def drawings(
    limit: int | None, seed: int, writers: str = "held-out", stray_tap: bool = False
) -> list[tuple[int, bytes]]:
    """(label, data URL) per pen digit of `writers`; `limit`: a random sample of that many."""
    digits = WRITERS[writers](pendigits.load())
    if limit:
        digits = random.Random(seed).sample(digits, limit)
    rng, tap_rng = random.Random(seed), random.Random(seed + 1)  # the same layouts with or without taps
    items = []
    for digit in digits:
        drawing = pendigits.layout(digit, rng)
        if stray_tap:
            drawing = with_stray_tap(drawing, tap_rng)
        items.append((digit.label, data_url(pendigits.render(drawing))))
    return items


def data_url(canvas: Image.Image) -> bytes:
    """The canvas as the page sends it: a PNG data URL (canvas.toDataURL())."""
    return b"data:image/png;base64," + base64.b64encode(pendigits.png_bytes(canvas))


def mnist_on_canvas(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """An MNIST digit drawn the way a person fills a 280x280 canvas: black on white, some size, somewhere."""
    side = int(rng.integers(120, 260))
    ink = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (280, 280), 0)
    canvas.paste(ink, tuple(int(v) for v in rng.integers(0, 280 - side + 1, size=2)))
    return pendigits.png_bytes(Image.eval(canvas, lambda v: 255 - v))


def mnist_drawings(mnist_dir: str, limit: int | None, seed: int) -> list[tuple[int, bytes]]:
    """MNIST test digits drawn on a 280x280 canvas as training's test_canvas figure draws them."""
    import torchvision

    test = torchvision.datasets.MNIST(mnist_dir, train=False)
    indices = (
        range(len(test.data))
        if not limit
        else sorted(random.Random(seed).sample(range(len(test.data)), limit))
    )
    items = []
    for i in indices:
        canvas = mnist_canvas.draw(test.data[i].numpy(), random.Random(mnist_canvas.render_seed("test", i)))
        items.append((int(test.targets[i]), data_url(canvas)))
    return items


def nondigit_drawings(copies: int = 4) -> list[tuple[str, bytes]]:
    """(family, data URL) of the held-out non-digit families, the drawings metrics.json measures."""
    return [(family, data_url(pendigits.render(d))) for family, d in nondigits.held_out_drawings(copies)]


def with_stray_tap(drawing: pendigits.Drawing, rng: random.Random) -> pendigits.Drawing:
    """The drawing plus one tap of the brush at a random spot at least two brush widths clear of the
    digit's extent, left or right or above or below it (unchanged if the digit leaves no such room)."""
    left, right, top, bottom = pendigits.extent(drawing.strokes)
    clear, low, high = 2 * drawing.brush, drawing.brush, pendigits.CANVAS - drawing.brush
    for _ in range(100):
        x, y = rng.uniform(low, high), rng.uniform(low, high)
        if x < left - clear or x > right + clear or y < top - clear or y > bottom + clear:
            return pendigits.Drawing(drawing.label, [*drawing.strokes, [(x, y)]], drawing.brush)
    return drawing
