"""Turn whatever a client sends into the 28x28 ink image MNIST was built from.

This is the one implementation used by the TorchServe handler and by every evaluation (tests, benchmarks).

MNIST digits were made by cropping the ink, scaling it so the longer side is 20 px (keeping the aspect
ratio, antialiased) and placing it in 28x28 with its centre of mass at the centre. A drawing on a canvas
is nothing like that until it gets the same treatment, and on top of MNIST's recipe we normalise the
stroke thickness, because a 20 px brush on a small digit becomes a blob after scaling and a thin brush
on a large digit nearly vanishes.

Output of preprocess(): float32 array (28, 28) of ink intensity in [0, 1], white ink on black, as ToTensor() gives MNIST.
The model normalises (mean/std) itself, inside the TorchScript file.
"""

import base64
import binascii
import io
import itertools
import json
import math
import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import pyspng
from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Bounded work per request: decoding costs in proportion to the pixels whatever the body's size (a flat
# image compresses to nearly nothing), so this caps the dearest accepted image at a few canvases of handler
# CPU (bench/worst_body.py; figures in docs/limits.md). 800x800, not 1024x1024: on a quiet machine the
# canvas is ~1 ms and a WebP of 1024x1024 measured 9.3-11.1x it, over the 10x bound. 800x800 still holds
# the page's 560x280 canvas at a devicePixelRatio of 2 (1120x560); the canvas is capped to it
# (web/static/js/drawing.js).
MAX_PIXELS = 800 * 800
MIN_SIDE = 8  # smaller than this is not a drawing
# Canvases of twice this or more are shrunk first, by the largest whole factor that leaves at least this
# on the longer side (the page's 280 px canvas by 2): a digit drawn 40 px tall still spans the 20 px of
# MNIST's box, and every later step has a quarter of the pixels (make bench-handler; docs/performance.md).
WORK_SIDE = 140
INK_THRESHOLD = 0.25  # share of full contrast that counts as ink when finding the digit's box
# Ink cut off from the rest by empty rows or columns and holding less than this share of it is stray,
# not part of the digit: left out of the crop, as are specks of any share (see _digit_pieces).
STRAY_SHARE = 0.05
MIN_CONTRAST = 0.15  # below this the whole image is one colour: nothing drawn
BOX = 20  # MNIST's box for the longer side
FINE = 4  # thickness is adjusted at FINE x the final scale, where it can be done in whole pixels
# Stroke widths, in 28x28 pixels, that are left alone: MNIST's own range (5th to 90th percentile of
# MNIST test digits drawn on canvases, measured with stroke_width()). Thinner strokes are grown to the
# low end, thicker ones thinned to the high end; thinning a stroke MNIST would have kept eats holes
# and joins (a bold 0 becomes a C), and the model reads MNIST's own range of widths well.
WIDTH_RANGE = (2.1, 3.9)

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),", re.IGNORECASE)
_IMAGE_MIME = {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif", "image/bmp"}


class InputError(ValueError):
    """Bad client input: becomes a 4xx answer with this message, never a server error."""

    status = 400


class UnsupportedMediaError(InputError):
    status = 415


class TooLargeError(InputError):
    status = 413


class NoDigitError(InputError):
    """Nothing (or only a speck) was drawn: answered as 'no digit drawn', never guessed."""

    status = 422
    reason = "no_digit"


class TwoLinesError(InputError):
    """A number is read on one line: writing on two (or more) is refused, not guessed at."""

    status = 422
    reason = "two_lines"


class TooManyDigitsError(InputError):
    status = 422
    reason = "too_many_digits"


def payload_to_bytes(payload) -> bytes:
    """Image bytes from any accepted request body.

    Accepted: raw PNG/JPEG/... bytes; a data URL as canvas.toDataURL() gives it; bare base64; JSON
    {"image": "<data URL or base64>"} (as text, or already parsed into a dict by TorchServe).
    """
    if isinstance(payload, dict):
        return _image_field(payload)
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload)
        if _looks_like_image(payload):
            return payload
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
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"the body looks like JSON but does not parse: {e.msg}")
        if not isinstance(doc, dict):
            raise InputError('JSON body must be an object like {"image": "<data URL>"}')
        return _image_field(doc)
    return _text_to_bytes(text)


def _image_field(doc: dict) -> bytes:
    image = doc.get("image")
    if not isinstance(image, str):
        raise InputError('JSON body must be {"image": "<data URL or base64 string>"}')
    return _text_to_bytes(image.strip())


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


def _looks_like_image(data: bytes) -> bool:
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
    return pixels if pixels is not None else _pixels(_loaded(_checked_header(data)))


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
    pixels as PIL's decoder in a fraction of the time (make bench-handler; docs/performance.md), and like it, it refuses a truncated or corrupt image stream. None for any other image."""
    size = _plain_png_size(data)
    if not size:
        return None
    _check_size(*size)
    try:
        return pyspng.load(data)
    except RuntimeError as e:
        raise InputError(f"the image is damaged or truncated ({e})")


def ink_map(picture: Image.Image | np.ndarray, side=max) -> np.ndarray:
    """Ink intensity, uint8 HxW, 0 = background and 255 = full ink, whatever the polarity or transparency.

    Takes a PIL image or decode()'s array. Stays in uint8 and maps pixels through a 256-entry table:
    float arithmetic on every pixel of the canvas cost more than all the rest of the preprocessing. The
    per-pixel work is OpenCV's (grey conversion, extrema, table): the same result as PIL's convert,
    getextrema and point in less time (make bench-handler). `side` picks the side WORK_SIDE applies to:
    the longer (one digit) or the shorter (a number, on a canvas much wider than tall)."""
    pixels = picture if isinstance(picture, np.ndarray) else _pixels(picture)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        # An opaque image (what the page sends: a filled canvas) needs none of this: compositing it onto
        # white changes nothing. Checked with each pixel as one little-endian uint32 whose top byte is
        # alpha: ~8 us, where OpenCV's extractChannel + minMaxLoc took ~17 and PIL's getextrema ~130.
        if (np.ascontiguousarray(pixels).view("<u4") < 0xFF000000).any():
            alpha = cv2.extractChannel(pixels, 3)
            # An unfilled canvas: the background is transparent and the ink is wherever paint is.
            if _border(alpha).mean() < 128:
                return _to_full_contrast(_reduced(alpha, side))
            white = Image.new("RGBA", (pixels.shape[1], pixels.shape[0]), (255, 255, 255, 255))
            pixels = np.asarray(Image.alpha_composite(white, Image.fromarray(pixels, "RGBA")))
        # OpenCV's luma weights are PIL's convert("L") (ITU-R 601-2) in 14-bit fixed point instead of
        # 16: a grey pixel (R = G = B, all a canvas's ink and antialiasing) comes out the same.
        return _to_full_contrast(_reduced(cv2.cvtColor(pixels, cv2.COLOR_RGBA2GRAY), side))
    if pixels.ndim == 3:
        return _to_full_contrast(_reduced(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), side))
    return _to_full_contrast(_reduced(pixels, side))


def _reduction(shape, side=max) -> int:
    return max(1, side(shape[:2]) // WORK_SIDE)


def _reduced(gray: np.ndarray, side=max) -> np.ndarray:
    """Shrunk by the largest whole factor k that leaves WORK_SIDE on `side` (the longer), each pixel the mean
    of a k x k block (OpenCV's INTER_AREA at a whole factor: ~3 us for 280 -> 140, where a fractional
    factor takes its slow general path, ~100x longer). Edge rows and columns that fill no block go."""
    k = _reduction(gray.shape, side)
    if k <= 1:
        return gray
    height, width = gray.shape[0] // k, gray.shape[1] // k
    return cv2.resize(gray[: height * k, : width * k], (width, height), interpolation=cv2.INTER_AREA)


def _pixels(image: Image.Image) -> np.ndarray:
    """A PIL image as decode() gives it: grey, RGB, or RGBA when it has any transparency."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    return np.asarray(image if image.mode in ("L", "RGB") else image.convert("L"))


def _to_full_contrast(gray: np.ndarray) -> np.ndarray:
    """Distance from the background, stretched so the strongest ink is 255. The background is what the
    border mostly is: dark for white-on-black, light for black-on-white, clear for a transparent canvas."""
    background = _median(_border(gray))
    low, high = cv2.minMaxLoc(gray)[:2]
    peak = max(high - background, background - low)
    if peak < MIN_CONTRAST * 255:
        return np.zeros(gray.shape, dtype=np.uint8)
    levels = np.abs(np.arange(256) - background) * (255 / peak)
    return cv2.LUT(gray, np.minimum(levels + 0.5, 255).astype(np.uint8))


def _median(values: np.ndarray) -> int:
    """int(np.median(values)) of uint8 values, from their histogram: ~4 us against ~22 for a sort."""
    below = np.bincount(values, minlength=256).cumsum()
    middle = len(values) / 2
    if len(values) % 2:
        return int(np.searchsorted(below, middle))  # the value of the middle element
    return (int(np.searchsorted(below, middle)) + int(np.searchsorted(below, middle + 1))) // 2


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: area over half the outline (a stroke of width w and length L has
    area w*L and an outline of about 2L)."""
    return _width(*_area_and_outline(mask))


def _width(area: int, outline: int) -> float:
    return 2.0 * area / max(outline, 1)


def _area_and_outline(mask: np.ndarray) -> tuple[int, int]:
    """Ink pixels, and those of them with a background 4-neighbour. Both add up over pieces that do not
    touch, so the stroke width of several pieces comes from their sums."""
    area = cv2.countNonZero(mask.view(np.uint8))
    if area == 0:
        return 0, 0
    # Erosion by a plus keeps the pixels whose 4 neighbours are all ink; past the edge is background.
    inner = cv2.erode(mask.view(np.uint8), _PLUS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return area, area - cv2.countNonZero(inner)


_PLUS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _bbox(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _runs(flags: np.ndarray):
    """Starts and ends (last+1) of the runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags, [0])).astype(np.int8)))
    return edges[::2], edges[1::2]


def _pieces(mask: np.ndarray, most: int = 256):
    """Boxes (top, bottom, left, right) of the pieces of ink that empty rows and columns cut apart, cut
    again inside each piece until none splits (an XY cut); None when there are more than `most`. Most
    drawings are one piece filling its box, which the first two projections show."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols):  # most drawings
        return [(rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)]
    todo, found = [(rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)], []
    while todo:
        top, bottom, left, right = todo.pop()
        piece = mask[top:bottom, left:right]
        rows = piece.any(axis=1)
        if not rows.all():  # split at empty rows, or trim empty margins
            starts, ends = _runs(rows)
            if len(starts) > 1:
                todo += [(top + s, top + e, left, right) for s, e in zip(starts, ends, strict=True)]
                continue
            top, bottom = top + starts[0], top + ends[0]
        cols = piece.any(axis=0)
        if not cols.all():
            starts, ends = _runs(cols)
            if len(starts) > 1:
                todo += [(top, bottom, left + s, left + e) for s, e in zip(starts, ends, strict=True)]
                continue
            left, right = left + starts[0], left + ends[0]
        found.append((top, bottom, left, right))
        if len(found) > most:
            return None
    return found


def _is_speck(piece, area: int, outline: int, canvas_side: int) -> bool:
    """A dot or a tiny scribble: no longer than 2.5 of its own stroke widths (a round tap is 2 of them,
    as the width estimate of a dot is its radius), or under 4% of the canvas."""
    top, bottom, left, right = piece
    return max(bottom - top, right - left) < max(2.5 * _width(area, outline), 0.04 * canvas_side)


def _digit_pieces(pieces, stats, specks):
    """The pieces that make the digit: stray taps and dots away from it are left out, as they would widen
    the crop and leave the digit small and off-centre. A piece is stray when it is a speck or holds
    under STRAY_SHARE of the ink; the heaviest piece always stays (a digit made only of dots keeps its
    biggest)."""
    total, heaviest = sum(area for area, _ in stats), max(range(len(stats)), key=lambda i: stats[i][0])
    return [
        (piece, stat)
        for i, (piece, stat, speck) in enumerate(zip(pieces, stats, specks, strict=True))
        if i == heaviest or (stat[0] >= STRAY_SHARE * total and not speck)
    ]


def to_mnist(ink: np.ndarray, canvas_side: int = 0) -> np.ndarray:
    """Crop, normalise stroke width, scale into 20x20 keeping aspect, centre by mass in 28x28. Specks are
    judged against canvas_side (default: the longer side of `ink`)."""
    mask = ink > INK_THRESHOLD * 255
    if not mask.any():
        raise NoDigitError("no digit drawn: the canvas is blank")
    pieces = _pieces(mask) or [_bbox(mask)]  # hundreds of pieces (noise, a spray): judged as one
    stats = [_area_and_outline(mask[top:bottom, left:right]) for top, bottom, left, right in pieces]
    specks = [
        _is_speck(piece, *stat, canvas_side or max(ink.shape))
        for piece, stat in zip(pieces, stats, strict=True)
    ]
    if all(specks):
        raise NoDigitError(
            f"no digit drawn: only {'a speck' if len(pieces) == 1 else 'specks'} on the canvas"
        )
    kept = _digit_pieces(pieces, stats, specks)
    top, bottom = min(p[0] for p, _ in kept), max(p[1] for p, _ in kept)
    left, right = min(p[2] for p, _ in kept), max(p[3] for p, _ in kept)
    height, width = bottom - top, right - left
    pen = _width(sum(area for _, (area, _) in kept), sum(outline for _, (_, outline) in kept))

    # Work at FINE x the final size, where thickness can be adjusted by whole pixels.
    fine_side = BOX * FINE
    scale = fine_side / max(height, width)
    fine = _normalise_thickness(_resize(ink[top:bottom, left:right], scale), pen * scale)

    # Re-crop (thickness changed the extent), then MNIST's 20 px box and centre of mass.
    top, bottom, left, right = _bbox(fine > INK_THRESHOLD * 255)
    h, w = bottom - top, right - left
    small = _resize(fine[top:bottom, left:right], BOX / max(w, h))
    return _centre_by_mass(small.astype(np.float32) * (1 / 255))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Scaled by `scale` (sides rounded, at least 1 px). Shrinking averages each output pixel's area of
    the input (OpenCV's INTER_AREA: antialiased, every input pixel counts), enlarging is bilinear. PIL's
    antialiased bilinear and Lanczos did this before at several times the cost (make bench-handler)."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _normalise_thickness(fine: np.ndarray, width: float) -> np.ndarray:
    """Grow or shrink strokes so that after the final scaling they are within MNIST's range of widths: a
    max (or min) filter over a square of 2k+1 pixels, OpenCV's dilate (erode), edges replicated."""
    low, high = WIDTH_RANGE[0] * FINE, WIDTH_RANGE[1] * FINE
    target = low if width < low else high if width > high else width
    steps = int(round((target - width) / 2))  # each 3x3 max/min filter changes the width by 2 px
    if steps == 0:
        return fine
    if steps > 0:  # room around the strokes to grow into
        padded = cv2.copyMakeBorder(fine, steps, steps, steps, steps, cv2.BORDER_CONSTANT, value=0)
        return cv2.dilate(padded, _square(2 * steps + 1), borderType=cv2.BORDER_REPLICATE)
    # Never thin a stroke below half the low end: erosion must not break it apart.
    steps = min(-steps, int((width - low / 2) / 2))
    if steps <= 0:
        return fine
    return cv2.erode(fine, _square(2 * steps + 1), borderType=cv2.BORDER_REPLICATE)


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), dtype=np.uint8)


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    total = digit.sum()
    h, w = digit.shape
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    cy = (digit.sum(axis=1) @ ys) / total
    cx = (digit.sum(axis=0) @ xs) / total
    top, left = int(round(13.5 - cy)), int(round(13.5 - cx))
    out = np.zeros((28, 28), dtype=np.float32)
    # Paste with clipping: a lopsided digit may be pushed partly past the edge, as in MNIST.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, 28), min(left + w, 28)
    out[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def preprocess(payload) -> np.ndarray:
    """Request body -> (28, 28) float32 ink image, or InputError with a message for the client."""
    return to_mnist(ink_map(decode(payload_to_bytes(payload))))


# ---- A whole number: several digits on one canvas (POST /read; docs/reading.md) -------------------------
MAX_DIGITS = 16
MAX_STRIP = 8  # a number's canvas is worked at up to this many times WORK_SIDE on its longer side
# Pieces of ink whose column ranges overlap by this share of the narrower one are strokes of one digit: a
# 5's flag, a 4 or a 7 in two strokes, a crossed 7, an 8 in two halves. Digits written apart do not.
MERGE_OVERLAP = 0.5
# A group of ink wider than this share of its height may be digits that touch: cuts are tried, and the
# model's scores over the whole string choose (choose()). Most single digits are narrower than tall.
SPLIT_ASPECT = 0.9
MIN_PART = 0.2  # of the group's height: no part is narrower than this (a 1 is about that)
# Touching digits meet anywhere, often where no valley of the ink's column profile is (a stroke crosses
# the neighbour's): cuts are tried every CUT_STEP of the height across a wide group, each a path that may
# wander PATH_REACH of the height from its column (further, paths slide into the next digit's hollows).
# Measured on writers 1-20's touching numbers (docs/reading.md): valleys alone left a reading of the
# right digits possible in 38% of them, this grid in 76% (budgeted as below; 82% unbudgeted).
CUT_STEP = 0.1
PATH_REACH = 0.1
MAX_PART = 1.4  # of the height: no part wider than this is tried (a digit rarely is), but the whole group
# Bounded work (docs/limits.md): one piece of ink wider than this many times its height (6 touching digits
# are about 4) is no number, and one drawing has at most MAX_CANDIDATES candidate pieces (each costs a
# to_mnist): the wide groups share them by width, and a group's cuts are spread wider than CUT_STEP when
# closer ones would give it more than its share. 300, not 400: touching numbers of writers 17-20 read the
# same (107 of 200 both, TUNE=1 model in-process), and the dearest /read body then, a zigzag across 2048x512
# (at 1024x1024 pixels), fell from 364 pieces to 212 (docs/limits.md).
MAX_GROUP_ASPECT = 8
MAX_CANDIDATES = 300
# Writing on two lines (_one_line): bands of rows this share of the tallest, gaps this share of a band's height.
LINE_SHARE = 0.5
LINE_GAP = 0.25


@dataclass
class Candidates:
    """What read_candidates() finds: every piece the model is to score (the groups of ink, and the parts of
    a wide group between candidate cuts), as one batch. spans[i] = (group, first node, last node): a group
    of ink has nodes 0..nodes[g]-1 (its left edge, its cuts, its right edge) and candidate i covers it
    from one node to another; a reading of the group is a path of candidates from its first node to its
    last. boxes are [x, y, w, h] in the drawing's own pixels."""

    images: np.ndarray  # (n, 28, 28) float32, as preprocess() gives one digit
    boxes: list
    spans: list
    nodes: list


def read_candidates(payload) -> Candidates:
    """Request body -> the candidate pieces of a number, or InputError (TwoLinesError, TooManyDigitsError,
    NoDigitError and the rest as preprocess() raises them)."""
    pixels = decode(payload_to_bytes(payload))
    # Shrunk by the shorter side: a 560x280 canvas keeps the same detail per digit as a 280x280 one.
    ink = ink_map(pixels, side=_number_side)
    scale = _reduction(pixels.shape, _number_side)
    groups = _groups(ink)
    if len(groups) > MAX_DIGITS:
        raise TooManyDigitsError(
            f"more than {MAX_DIGITS} pieces of writing: at most {MAX_DIGITS} digits are read"
        )
    for *_, mask in groups:
        height, width = mask.shape
        if width > MAX_GROUP_ASPECT * height:
            raise TooManyDigitsError(
                f"one stroke {width / height:.0f} times as wide as it is tall: not digits that can be told apart"
            )
    wide = [m.shape[1] > SPLIT_ASPECT * m.shape[0] for *_, m in groups]
    wide_width = sum(m.shape[1] for (*_, m), w in zip(groups, wide, strict=True) if w)
    share = (MAX_CANDIDATES - wide.count(False)) / max(1, wide_width)  # candidates per column, wide groups
    found = Candidates([], [], [], [])
    for g, (top, bottom, left, right, mask) in enumerate(groups):
        piece = np.where(mask, ink[top:bottom, left:right], 0)
        height, width = mask.shape
        starts = _cuts(mask, share * width) if wide[g] else []
        cuts = _paths(mask, starts) if starts else []
        # Each cut a path from top to bottom: where touching digits overlap, no straight line parts them.
        paths = [np.zeros(height, np.int64), *cuts, np.full(height, width)]
        found.nodes.append(len(paths))
        columns = np.arange(width)
        for i, j in _parts([0, *starts, width], height):  # as _cuts counted them: within budget
            whole = (i, j) == (0, len(paths) - 1)
            lo, hi = int(paths[i].min()), int(paths[j].max())  # the part's columns, no more
            window = columns[lo:hi]
            between = (window >= paths[i][:, None]) & (window < paths[j][:, None])
            part = np.where(between, piece[:, lo:hi], 0)
            try:  # one digit drawn alone: exactly the image /predict makes (its resolution, its strays)
                alone = whole and len(groups) == 1
                image = to_mnist(ink_map(pixels)) if alone else to_mnist(part, min(ink.shape))
            except NoDigitError:
                continue  # only specks between these cuts: never a digit
            y0, y1, x0, x1 = _bbox(part > INK_THRESHOLD * 255)
            found.images.append(image)
            found.boxes.append(_box(top + y0, top + y1, left + lo + x0, left + lo + x1, scale))
            found.spans.append((g, i, j))
        if len(found.images) > MAX_CANDIDATES:
            raise TooManyDigitsError("too much writing in one piece to cut into digits")
    if not found.images:
        raise NoDigitError("no digit drawn: only specks on the canvas")
    found.images = np.stack(found.images)
    return found


def _number_side(shape) -> int:
    """The side WORK_SIDE applies to for a number: the shorter, but a strip longer than MAX_STRIP times
    it is shrunk as if its shorter side were that much longer (the work stays bounded: docs/limits.md)."""
    return max(min(shape), max(shape) // MAX_STRIP)


def _box(top, bottom, left, right, scale) -> list:
    return [int(left * scale), int(top * scale), int((right - left) * scale), int((bottom - top) * scale)]


def _groups(ink: np.ndarray) -> list:
    """The drawing's pieces of ink grouped into digits, left to right: (top, bottom, left, right, mask of
    the group's own ink in that box). Specks are left out, and so are small stray marks (under STRAY_SHARE
    of the ink and under half the height of the tallest group), as preprocess() leaves them out of a digit."""
    mask = (ink > INK_THRESHOLD * 255).view(np.uint8)
    if not mask.any():
        raise NoDigitError("no digit drawn: the canvas is blank")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count - 1 > 256:  # a spray of noise: one piece, as preprocess() judges it
        labels, stats = mask.astype(np.int32), np.array([[0, 0, 0, 0, 0], _stat_of(mask)])
        count = 2
    inner = cv2.erode(mask, _PLUS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = np.bincount(labels[(mask > 0) & (inner == 0)], minlength=count)
    side = min(ink.shape)
    pieces = []
    for label in range(1, count):
        left, top, width, height, area = stats[label]
        box = (top, top + height, left, left + width)
        if not _is_speck(box, int(area), int(outline[label]), side):
            pieces.append([left, left + width, top, top + height, [label], int(area)])
    if not pieces:
        raise NoDigitError("no digit drawn: only specks on the canvas")
    _one_line(pieces)
    pieces.sort()
    merged = [pieces[0]]
    for piece in pieces[1:]:
        last = merged[-1]
        overlap = min(last[1], piece[1]) - max(last[0], piece[0])
        if overlap >= MERGE_OVERLAP * min(last[1] - last[0], piece[1] - piece[0]):
            last[:] = [last[0], max(last[1], piece[1]), min(last[2], piece[2]), max(last[3], piece[3]),
                       last[4] + piece[4], last[5] + piece[5]]  # fmt: skip
        else:
            merged.append(piece)
    total, tall = sum(m[5] for m in merged), max(m[3] - m[2] for m in merged)
    kept = [m for m in merged if m[5] >= STRAY_SHARE * total or m[3] - m[2] >= tall / 2]
    return [
        (top, bottom, left, right, _own_ink(labels[top:bottom, left:right], own))
        for left, right, top, bottom, own, _ in kept
    ]


def _own_ink(labels: np.ndarray, own: list) -> np.ndarray:
    """A group's pixels: its pieces, and the antialiased fringe around them that no other piece has."""
    mine = np.isin(labels, own)
    fringe = cv2.dilate(mine.view(np.uint8), _square(3)).view(bool) & (labels == 0)
    return mine | fringe


def _one_line(pieces: list) -> None:
    """TwoLinesError when the pieces' rows fall into bands apart by LINE_GAP of the lower band's height or
    more, two of them each at least LINE_SHARE of the tallest band: lines of writing (a 5's flag above its
    body is a thin band; an 8 in two halves has no such gap)."""
    bands = []
    for _, _, top, bottom, _, _ in sorted(pieces, key=lambda piece: piece[2]):
        if bands and top < bands[-1][1] + LINE_GAP * (bottom - top):
            bands[-1][1] = max(bands[-1][1], bottom)
        else:
            bands.append([top, bottom])
    tall = max(bottom - top for top, bottom in bands)
    if sum(bottom - top >= LINE_SHARE * tall for top, bottom in bands) > 1:
        raise TwoLinesError("writing on more than one line: write the number on one line")


def _stat_of(mask: np.ndarray) -> list:
    top, bottom, left, right = _bbox(mask)
    return [left, top, right - left, bottom - top, cv2.countNonZero(mask)]


def _cuts(mask: np.ndarray, budget: float) -> list:
    """Candidate columns to cut a group at, left to right: every CUT_STEP of the height, none within
    MIN_PART of the height of an edge; spread wider while that would make more than `budget` candidate
    parts (_parts)."""
    height, width = mask.shape
    least = max(1, int(MIN_PART * height))
    step = max(1.0, CUT_STEP * height)
    while step <= width:
        xs = [int(round(x)) for x in np.arange(least, width - least + 1, step)]
        if len(_parts([0, *xs, width], height)) <= budget:
            return xs
        step *= 1.25
    return []


def _parts(edges: list, height: int) -> list:
    """The (i, j) of the candidate parts between edges[i] and edges[j] (columns, rising): the whole group,
    and every part from MIN_PART to MAX_PART of the height wide."""
    last = len(edges) - 1
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(edges)), 2)
        if (i, j) == (0, last) or MIN_PART * height <= edges[j] - edges[i] <= MAX_PART * height
    ]


def _paths(mask: np.ndarray, xs: list) -> list:
    """Per column x of xs, a cut from top to bottom near it, one column per row, moving at most one column
    a row and PATH_REACH of the height from x: the path that crosses the least ink (a step aside costs a
    little, so it runs straight through empty space). Dynamic programming over the rows, all cuts at once."""
    height, width = mask.shape
    reach = max(1, int(PATH_REACH * height))
    offsets = np.arange(-reach, reach + 1)
    columns = np.asarray(xs)[:, None] + offsets  # (cuts, window)
    inside = (columns >= 0) & (columns < width)
    cost = np.where(inside, mask[:, np.clip(columns, 0, width - 1)], np.inf)  # (rows, cuts, window)
    cost = cost.astype(np.float32) + 0.01 * np.abs(offsets)
    total, came = cost[0].copy(), np.zeros(cost.shape, np.int8)
    # Per row, each column's best of the three above it (left, straight, right), in place: this loop is
    # most of a number's preprocessing when it has cuts.
    left, right, best = (np.full_like(total, np.inf) for _ in range(3))
    for row in range(1, height):
        left[:, 1:], right[:, :-1] = total[:, :-1], total[:, 1:]
        np.minimum(left, right, out=best)
        np.minimum(best, total, out=best)
        came[row] = np.where(left == best, -1, np.where(total == best, 0, 1))  # ties: the leftmost
        np.add(best, cost[row], out=total)
    at = total.argmin(axis=1)
    steps = np.empty((height, len(xs)), np.int64)
    cuts = np.arange(len(xs))
    for row in range(height - 1, -1, -1):
        steps[row] = at
        at = at + came[row, cuts, at]
    return list((columns[cuts, steps]).T)


@dataclass
class Digit:
    index: int  # into Candidates.images
    box: list
    probabilities: np.ndarray  # the model's, softmax over all its outputs


def choose(candidates: Candidates, probabilities: np.ndarray) -> list:
    """The reading of every group that the model likes best: per group, the path of candidates from its
    left edge to its right whose digits' summed log-probabilities (the best digit of each) is highest. A piece the model calls "not a digit" scores low, so two touching digits
    left whole lose to the cut between them. Digits left to right."""
    score = np.log(np.maximum(probabilities[:, :10].max(axis=1), 1e-12))
    digits = []
    for g, nodes in enumerate(candidates.nodes):
        best = [(-math.inf, [])] * nodes
        best[0] = (0.0, [])
        for end in range(1, nodes):
            for i, (group, start, stop) in enumerate(candidates.spans):
                if group == g and stop == end and best[start][0] > -math.inf:
                    value = best[start][0] + score[i]
                    if value > best[end][0]:
                        best[end] = (value, best[start][1] + [i])
        digits += [Digit(i, candidates.boxes[i], probabilities[i]) for i in best[-1][1]]
    return digits


def read_answer(candidates: Candidates, digits: list) -> dict:
    """The answer's "number" and "digits" (docs/api.md): a piece the model calls "not a digit" (an 11th
    output over 0.5) is "digit": null, and then the number is null. TooManyDigitsError past MAX_DIGITS
    (the cuts of wide groups may add digits to the pieces read_candidates counted)."""
    if len(digits) > MAX_DIGITS:
        raise TooManyDigitsError(f"more than {MAX_DIGITS} digits: at most {MAX_DIGITS} are read")
    pieces = []
    for d in digits:
        guess = d.probabilities[:10] / d.probabilities[:10].sum()
        rejected = len(d.probabilities) > 10 and d.probabilities[10] > 0.5
        image = (candidates.images[d.index] * 255).round().astype(np.uint8)
        pieces.append(
            {
                "digit": None if rejected else int(guess.argmax()),
                "probabilities": guess.tolist(),
                "box": d.box,
                "input_28x28": base64.b64encode(image).decode(),
            }
        )
    number = "".join(str(p["digit"]) for p in pieces) if all(p["digit"] is not None for p in pieces) else None
    return {"number": number, "digits": pieces}


def read_number(payload, probabilities_of) -> dict:
    """A drawing's number, in-process (benchmarks, evaluation): probabilities_of maps (n, 28, 28) images
    to the model's softmax outputs (n, 10 or 11)."""
    candidates = read_candidates(payload)
    return read_answer(candidates, choose(candidates, probabilities_of(candidates.images)))
