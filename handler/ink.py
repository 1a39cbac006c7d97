"""Where the ink is: a picture's ink map (ink_map: whatever the polarity or transparency, 255 = full ink),
and the measures of ink that one digit (handler/mnist_form.py) and a number (handler/groups.py,
handler/segment.py) both take of it: its box, its stroke width, whether a piece of it is a speck.
"""

import cv2
import numpy as np
from PIL import Image

from .decode import image_pixels

# Canvases of twice this or more are shrunk first, by the largest whole factor that leaves at least this
# on the longer side (the page's 280 px canvas by 2): a digit drawn 40 px tall still spans the 20 px of
# MNIST's box, and every later step has a quarter of the pixels (docs/performance.md, handler stages).
WORK_SIDE = 140
INK_THRESHOLD = 0.25  # share of full contrast that counts as ink when finding the digit's box
MIN_CONTRAST = 0.15  # below this the whole image is one colour: nothing drawn


def ink_map(picture: Image.Image | np.ndarray, side=max) -> np.ndarray:
    """Ink intensity, uint8 HxW, 0 = background and 255 = full ink, whatever the polarity or transparency.

    Takes a PIL image or decode()'s array. Stays in uint8 and maps pixels through a 256-entry table:
    float arithmetic on every pixel of the canvas cost more than all the rest of the preprocessing. The
    per-pixel work is OpenCV's (grey conversion, extrema, table): the same result as PIL's convert,
    getextrema and point in less time (docs/performance.md, handler stages). `side` picks the side WORK_SIDE applies to:
    the longer (one digit) or the shorter (a number, on a canvas much wider than tall)."""
    pixels = picture if isinstance(picture, np.ndarray) else image_pixels(picture)
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


def reduction(shape, side=max) -> int:
    """The whole factor ink_map shrinks a picture of this shape by (_reduced): its pixels per ink map pixel."""
    return max(1, side(shape[:2]) // WORK_SIDE)


def _reduced(gray: np.ndarray, side=max) -> np.ndarray:
    """Shrunk by the largest whole factor k that leaves WORK_SIDE on `side` (the longer), each pixel the mean
    of a k x k block (OpenCV's INTER_AREA at a whole factor: ~3 us for 280 -> 140, where a fractional
    factor takes its slow general path, ~100x longer). Edge rows and columns that fill no block go."""
    k = reduction(gray.shape, side)
    if k <= 1:
        return gray
    height, width = gray.shape[0] // k, gray.shape[1] // k
    return cv2.resize(gray[: height * k, : width * k], (width, height), interpolation=cv2.INTER_AREA)


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
    return mean_width(*area_and_outline(mask))


def mean_width(area: int, outline: int) -> float:
    return 2.0 * area / max(outline, 1)


def area_and_outline(mask: np.ndarray) -> tuple[int, int]:
    """Ink pixels, and those of them with a background 4-neighbour. Both add up over pieces that do not
    touch, so the stroke width of several pieces comes from their sums."""
    area = cv2.countNonZero(mask.view(np.uint8))
    if area == 0:
        return 0, 0
    # Erosion by a plus keeps the pixels whose 4 neighbours are all ink; past the edge is background.
    inner = cv2.erode(mask.view(np.uint8), PLUS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return area, area - cv2.countNonZero(inner)


PLUS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def bbox(mask: np.ndarray):
    """(top, bottom, left, right) of a mask's True pixels, bottom and right past the last."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def is_speck(piece, area: int, outline: int, canvas_side: int) -> bool:
    """A dot or a tiny scribble: no longer than 2.5 of its own stroke widths (a round tap is 2 of them,
    as the width estimate of a dot is its radius), or under 4% of the canvas."""
    top, bottom, left, right = piece
    return max(bottom - top, right - left) < max(2.5 * mean_width(area, outline), 0.04 * canvas_side)


def square(size: int) -> np.ndarray:
    return np.ones((size, size), dtype=np.uint8)
