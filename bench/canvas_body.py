"""The body every benchmark posts: what the page sends, a canvas data URL of a held-out pen digit."""

import base64
import io
import random

from train import pendigits


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
