"""Drawings and not-drawings as the tests send them: held-out pen digits as data URLs, every kind of bad
input (BAD_INPUTS: body, content type, the status it must get), and feedback bodies."""

import base64
import functools
import io
import json
import random
import struct
import zlib

import numpy as np
from PIL import Image

from tests.stack import TICKET_KEY
from train import pendigits
from web.tickets import Tickets, drawing_hash


def png(image: Image.Image) -> bytes:
    return pendigits.png_bytes(image)


def data_url(raw: bytes, mime: str = "image/png") -> bytes:
    return f"data:{mime};base64,".encode() + base64.b64encode(raw)


@functools.cache
def drawing(index: int = 0, seed: int = 0) -> bytes:
    digit = pendigits.held_out(pendigits.load())[index]
    return data_url(png(pendigits.render(pendigits.layout(digit, random.Random(seed)))))


def bomb_png(side: int = 30000) -> bytes:
    """A PNG that declares side x side pixels in a few hundred bytes: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("L", (64, 64), 255), Image.new("L", (64, 64), 0)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


GOOD_PNG = png(pendigits.render(pendigits.layout(pendigits.load()[0], random.Random(5))))
BAD_INPUTS = {
    "empty body": (b"", "text/plain", 400),
    "text that is not a data URL": (b"please read my digit", "text/plain", 415),
    "data URL of another type": (b"data:text/html;base64,PGgxPmhpPC9oMT4=", "text/plain", 415),
    "broken base64": (b"data:image/png;base64,iVBORw0KGgo=@@@###", "text/plain", 400),
    "bytes that are not an image": (bytes(range(256)) * 8, "application/octet-stream", 415),
    "a truncated PNG": (data_url(GOOD_PNG[: len(GOOD_PNG) // 2]), "text/plain", 400),
    "a decompression bomb": (data_url(bomb_png()), "text/plain", 413),
    "a body over the size limit": (b"data:image/png;base64," + b"A" * (2 * 1024 * 1024), "text/plain", 413),
    "a wrong JSON shape": (b'{"picture": "data:image/png;base64,AAAA"}', "application/json", 400),
    "JSON that is a list": (b'["data:image/png;base64,AAAA"]', "application/json", 400),
    # Deeper than Python's parser goes: a RecursionError, once a 503 for every drawing of its batch.
    "JSON nested 5,000 deep": (b"[" * 5000, "application/json", 400),
    "an animated image": (data_url(animated_gif(), "image/gif"), "text/plain", 400),
    "a 1x1 image": (data_url(png(Image.new("L", (1, 1), 0))), "text/plain", 400),
    "a blank canvas": (data_url(png(Image.new("RGBA", (280, 280), (0, 0, 0, 0)))), "text/plain", 422),
    "a speck": (data_url(png(Image.new("L", (280, 280), 255).crop((0, 0, 280, 280)))), "text/plain", 422),
}
# The speck: one brush dab on an otherwise white canvas.
_speck = Image.new("L", (280, 280), 255)
_speck.paste(0, (140, 140, 152, 152))
BAD_INPUTS["a speck"] = (data_url(png(_speck)), "text/plain", 422)


def feedback_body(index: int, label: int, predicted: int = 1, version: str = "1.0") -> bytes:
    """Feedback with a fresh ticket, as if /predict had answered `predicted` by `version` (signed with the
    key tests/stack.py gives its web apps)."""
    image = drawing(index % 16).decode()
    ticket = Tickets(TICKET_KEY.encode()).issue(drawing_hash(image), version, predicted)
    doc = {"image": image, "label": label, "predicted": predicted, "version": version, "ticket": ticket}
    return json.dumps(doc).encode()


def read_in_process(model_dir, bodies: list[bytes], pieces: bool = True) -> list[tuple[int, dict]]:
    """/read's answers as the handler reads them, in-process (train/numbers.py read_all): the model and,
    where it has one (and `pieces`), its piece reader (train/piece_reader.py)."""
    from train import numbers, piece_reader

    model = model_dir / "model.pt"
    return numbers.read_all(bodies, str(model), piece_reader.beside(model) if pieces else None)


def same_reading(got: dict, want: dict) -> None:
    """Two /read answers read the same: the number, each digit, its box and its probabilities."""
    assert got["number"] == want["number"], (got["number"], want["number"])
    assert [d["digit"] for d in got["digits"]] == [d["digit"] for d in want["digits"]]
    assert [d["box"] for d in got["digits"]] == [list(d["box"]) for d in want["digits"]]
    for g, w in zip(got["digits"], want["digits"], strict=True):
        assert np.allclose(g["probabilities"], w["probabilities"], atol=1e-4)
