"""The body every benchmark posts: what the page sends, a canvas data URL of a held-out pen digit (or, for
/read, of a number of them)."""

import base64
import io
import json
import random

from PIL import Image

from train import numbers, pendigits


def canvas_png(image) -> bytes:
    """The PNG a browser's canvas.toDataURL() gives: RGBA, fast zlib (about its size and decode cost:
    ~6 KB, ~0.9 ms here, as one read off Chromium)."""
    buffer = io.BytesIO()
    image.convert("RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def canvas_data_url(index: int = 0) -> bytes:
    """Held-out pen digit `index` drawn on an opaque 280x280 canvas (train/pendigits.py), as a data URL."""
    digit = pendigits.held_out(pendigits.load())[index]
    image = pendigits.render(pendigits.layout(digit, random.Random(index)))
    return b"data:image/png;base64," + base64.b64encode(canvas_png(image))


def number_data_url(length: int = 4, seed: int = 0, strokes: bool = False) -> tuple[bytes, str]:
    """(body, label): `length` digits of one held-out writer (21-30) written "apart" on the page's
    560x280 canvas (train/numbers.py), as the page sends it for /read: the data URL, or with `strokes` the
    JSON {"image", "strokes"} of the same drawing (numbers.page_strokes gives the pen's times)."""
    rng = random.Random(seed)
    by_writer: dict[int, list] = {}
    for digit in pendigits.held_out(pendigits.load()):
        by_writer.setdefault(digit.writer, []).append(digit)
    digits = rng.sample(by_writer[rng.choice(sorted(by_writer))], length)
    drawings = numbers.place(digits, rng, (560, 280), "apart")
    image = Image.open(io.BytesIO(numbers.drawn_png(drawings, (560, 280))))
    url = b"data:image/png;base64," + base64.b64encode(canvas_png(image))
    label = "".join(str(d.label) for d in digits)
    if not strokes:
        return url, label
    body = {"image": url.decode(), "strokes": numbers.page_strokes(drawings, rng)}
    return json.dumps(body, separators=(",", ":")).encode(), label
