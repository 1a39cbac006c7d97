"""One digit into the 28x28 ink image MNIST was built from: the one implementation, used by the
TorchServe handler and by every evaluation and training render (tests, benchmarks, train/).

MNIST digits were made by cropping the ink, scaling it so the longer side is 20 px (keeping the aspect
ratio, antialiased) and placing it in 28x28 with its centre of mass at the centre. A drawing on a canvas
is nothing like that until it gets the same treatment, and on top of MNIST's recipe we normalise the
stroke thickness, because a 20 px brush on a small digit becomes a blob after scaling and a thin brush
on a large digit nearly vanishes.

Output of preprocess() and to_mnist(): float32 array (28, 28) of ink intensity in [0, 1], white ink on
black, as ToTensor() gives MNIST. The model normalises (mean/std) itself, inside the TorchScript file.
"""

import cv2
import numpy as np

from .decode import decode, payload_to_bytes
from .errors import NoDigitError
from .ink import INK_THRESHOLD, area_and_outline, bbox, ink_map, is_speck, mean_width, square

# Ink cut off from the rest by empty rows or columns and holding less than this share of it is stray,
# not part of the digit: left out of the crop, as are specks of any share (see _digit_pieces).
STRAY_SHARE = 0.05
BOX = 20  # MNIST's box for the longer side
FINE = 4  # thickness is adjusted at FINE x the final scale, where it can be done in whole pixels
# Stroke widths, in 28x28 pixels, that are left alone: MNIST's own range (5th to 90th percentile of
# MNIST test digits drawn on canvases, measured with ink.stroke_width()). Thinner strokes are grown to the
# low end, thicker ones thinned to the high end; thinning a stroke MNIST would have kept eats holes
# and joins (a bold 0 becomes a C), and the model reads MNIST's own range of widths well.
WIDTH_RANGE = (2.1, 3.9)


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
    pieces = _pieces(mask) or [bbox(mask)]  # hundreds of pieces (noise, a spray): judged as one
    stats = [area_and_outline(mask[top:bottom, left:right]) for top, bottom, left, right in pieces]
    specks = [
        is_speck(piece, *stat, canvas_side or max(ink.shape))
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
    pen = mean_width(sum(area for _, (area, _) in kept), sum(outline for _, (_, outline) in kept))

    # Work at FINE x the final size, where thickness can be adjusted by whole pixels.
    fine_side = BOX * FINE
    scale = fine_side / max(height, width)
    fine = _normalise_thickness(_resize(ink[top:bottom, left:right], scale), pen * scale)

    # Re-crop (thickness changed the extent), then MNIST's 20 px box and centre of mass.
    top, bottom, left, right = bbox(fine > INK_THRESHOLD * 255)
    h, w = bottom - top, right - left
    small = _resize(fine[top:bottom, left:right], BOX / max(w, h))
    return _centre_by_mass(small.astype(np.float32) * (1 / 255))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Scaled by `scale` (sides rounded, at least 1 px). Shrinking averages each output pixel's area of
    the input (OpenCV's INTER_AREA: antialiased, every input pixel counts), enlarging is bilinear. PIL's
    antialiased bilinear and Lanczos did this before at several times the cost (docs/performance.md, handler stages)."""
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
        return cv2.dilate(padded, square(2 * steps + 1), borderType=cv2.BORDER_REPLICATE)
    # Never thin a stroke below half the low end: erosion must not break it apart.
    steps = min(-steps, int((width - low / 2) / 2))
    if steps <= 0:
        return fine
    return cv2.erode(fine, square(2 * steps + 1), borderType=cv2.BORDER_REPLICATE)


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
