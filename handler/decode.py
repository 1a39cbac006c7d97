"""A request's body -> the image bytes it carries -> their pixels, within size limits.

Bodies: raw image bytes, a data URL as canvas.toDataURL() gives it, bare base64, JSON {"image": ...}
(payload_to_bytes), which may also carry the pen's "strokes" (payload_to_drawing; handler/strokes.py
checks them). Images: known formats only, one frame, bounded pixels, fully read (open_image,
decode); a plain PNG, what a canvas sends, is decoded by libspng. Whatever is wrong is an InputError
(handler/errors.py) that says what.
"""

import base64
import binascii
import io
import json
import re
import struct

import numpy as np
import orjson
import pyspng
from PIL import Image, UnidentifiedImageError

from .errors import InputError, TooLargeError, UnsupportedMediaError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Bounded work per request: decoding costs in proportion to the pixels whatever the body's size (a flat
# image compresses to nearly nothing), so this caps the dearest accepted image at a few canvases of handler
# CPU (bench/worst_body.py; figures in docs/limits.md). 800x800, not 1024x1024: on a quiet machine the
# canvas is ~1 ms and a WebP of 1024x1024 measured 9.3-11.1x it, over the 10x bound. 800x800 still holds
# the page's 560x280 canvas at a devicePixelRatio of 2 (1120x560); the canvas is capped to it (app.js).
MAX_PIXELS = 800 * 800
MIN_SIDE = 8  # smaller than this is not a drawing

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),", re.IGNORECASE)
_IMAGE_MIME = {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif", "image/bmp"}


NO_STROKES = object()  # payload_to_drawing's strokes when the body has none (JSON null is not "none")


def payload_to_bytes(payload) -> bytes:
    """Image bytes from any accepted request body.

    Accepted: raw PNG/JPEG/... bytes; a data URL as canvas.toDataURL() gives it; bare base64; JSON
    {"image": "<data URL or base64>"} (as text, or already parsed into a dict by TorchServe).
    """
    return payload_to_drawing(payload)[0]


def payload_to_drawing(payload) -> tuple[bytes, object]:
    """payload_to_bytes' image bytes, and the JSON body's "strokes" as parsed, unchecked (NO_STROKES when
    the body has none)."""
    if isinstance(payload, dict):
        return _fields(payload)
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload)
        if looks_like_image(payload):
            return payload, NO_STROKES
        try:
            payload = payload.decode("ascii")
        except UnicodeDecodeError:
            raise UnsupportedMediaError("the body is neither an image nor text (a data URL or base64)")
    if not isinstance(payload, str):
        raise InputError(f"unsupported body of type {type(payload).__name__}")
    text = payload.strip()
    if not text:
        raise InputError("empty body: send the canvas as a data URL (canvas.toDataURL())")
    if text.startswith(("{", "[")):  # JSON: an object is the form we take, a list the wrong shape (400)
        try:
            doc = _loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"the body looks like JSON but does not parse: {e.msg}")
        except RecursionError:
            raise InputError("the body looks like JSON but nests deeper than any drawing does") from None
        except ValueError:  # an integer of more digits than Python converts (4,300)
            raise InputError("the body looks like JSON but holds a number too long to read") from None
        if not isinstance(doc, dict):
            raise InputError('JSON body must be an object like {"image": "<data URL>"}')
        return _fields(doc)
    return _text_to_bytes(text), NO_STROKES


def _loads(text: str):
    """JSON text, parsed by orjson (a fifth of json's time on the pen's strokes, hundreds of numbers),
    or by json wherever orjson refuses: json's readings and errors (NaN, integers past 64 bits, deep
    nesting) are what the API's messages are written for."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _fields(doc: dict) -> tuple[bytes, object]:
    image = doc.get("image")
    if not isinstance(image, str):
        raise InputError('JSON body must be {"image": "<data URL or base64 string>"}')
    return _text_to_bytes(image.strip()), doc.get("strokes", NO_STROKES)


def _text_to_bytes(text: str) -> bytes:
    match = _DATA_URL.match(text)
    if match:
        mime = (match["mime"] or "text/plain").lower()
        if mime not in _IMAGE_MIME:
            raise UnsupportedMediaError(f"data URL of type {mime}: send an image (image/png, image/jpeg)")
        if ";base64" not in match["params"].lower():
            raise InputError("data URL is not base64-encoded")
        text = text[match.end() :]
    elif text.startswith("data:"):
        raise InputError("malformed data URL")
    try:  # what toDataURL() gives decodes as it is
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = _lenient_b64decode(text)
    if data is None and match:
        raise InputError("the data URL's base64 does not decode")
    if data is None:  # prose, a CSV, a text file: not an image in any form we take
        raise UnsupportedMediaError("the body is text, but neither a data URL nor base64 of an image")
    if not data:
        raise InputError("the data URL carries no data")
    return data


def _lenient_b64decode(text: str) -> bytes | None:
    """Base64 as it arrives after being mangled on the way: form encoding may have turned '+' into ' ',
    lines may be wrapped, URL-safe base64 uses '-' and '_', padding may be missing. None: not base64."""
    text = re.sub(r"\s", "", text.replace(" ", "+")).replace("-", "+").replace("_", "/")
    if not text:
        raise InputError("the data URL carries no data")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def looks_like_image(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" or data[:4] in (b"GIF8", b"RIFF")


def open_image(data: bytes) -> Image.Image:
    """Decode safely: known formats only, one frame, bounded size, fully read (so truncation shows)."""
    pixels = _plain_png(data)
    if pixels is not None:  # what a canvas sends
        decoded = Image.fromarray(pixels)  # L, RGB or RGBA, from the array's shape
        decoded.format = "PNG"  # as PIL's decoder says it: callers tell a PNG from other formats by it
        return decoded
    return _loaded(_checked_header(data))


def decode(data: bytes) -> np.ndarray:
    """open_image's pixels as an array (HxW grey, HxWx3 RGB or HxWx4 RGBA, uint8), with the same checks:
    serving goes from the PNG's bytes to an array with no PIL image in between (each conversion between
    the two copies the pixels). A plain PNG's header is read here, not by PIL (~3 us against ~33)."""
    pixels = _plain_png(data)
    return pixels if pixels is not None else image_pixels(_loaded(_checked_header(data)))


def _plain_png_size(png: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG that libspng decodes to exactly what PIL does, from its chunks before the
    image data: 8-bit grey, RGB or RGBA (IHDR's bit depth and colour type), no transparency chunk (tRNS)
    and not animated (acTL). None for anything else, broken chunks included: PIL reads those (palettes,
    other depths, transparency, frames), and says what is wrong."""
    if png[:16] != b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" or len(png) < 33:
        return None
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    if depth != 8 or colour not in (0, 2, 6):  # PNG colour types grey, RGB, RGBA
        return None
    at = 33  # past IHDR: signature 8, length and type 8, data 13, CRC 4
    while at + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        if kind == b"IDAT":
            return width, height
        if kind in (b"tRNS", b"acTL"):
            return None
        at += 12 + length
    return None


def _checked_header(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedMediaError(
            "the data is not an image in a supported format (PNG, JPEG, WebP, GIF, BMP)"
        )
    except Image.DecompressionBombError:
        raise TooLargeError("image dimensions are too large")
    _check_size(*image.size)
    if getattr(image, "n_frames", 1) > 1:
        raise InputError("animated or multi-frame images are not accepted: send a single frame")
    return image


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise TooLargeError(f"image of {width}x{height} pixels is too large (at most {MAX_PIXELS} pixels)")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"image of {width}x{height} pixels is too small to hold a drawing")


def _loaded(image: Image.Image) -> Image.Image:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"the image is damaged or truncated ({e})")
    return image


def _plain_png(data: bytes) -> np.ndarray | None:
    """A plain PNG (_plain_png_size) decoded by libspng (pyspng), once its size is checked: the same
    pixels as PIL's decoder in a fraction of the time (docs/performance.md, handler stages), and like it, it refuses a truncated or corrupt image stream. None for any other image."""
    size = _plain_png_size(data)
    if not size:
        return None
    _check_size(*size)
    try:
        return pyspng.load(data)
    except RuntimeError as e:
        raise InputError(f"the image is damaged or truncated ({e})")


def image_pixels(image: Image.Image) -> np.ndarray:
    """A PIL image as decode() gives it: grey, RGB, or RGBA when it has any transparency."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    return np.asarray(image if image.mode in ("L", "RGB") else image.convert("L"))
