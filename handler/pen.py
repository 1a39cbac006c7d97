"""The pen's strokes as a request sends them beside its image (docs/api.md), and each stroke's ink.

checked() is the API's rule: a non-empty list of strokes in drawing order, each a non-empty list of
[x, y, t] (x, y in the image's own pixels, t in ms from any origin, never decreasing within a stroke),
at most MAX_STROKES strokes and MAX_POINTS points, every number finite; a point outside the image is
clipped to it (the pen may leave the canvas mid-stroke). Anything else is an InputError that names
it: a 400, never a reading that quietly leaves the strokes out.

over_ink() lays the strokes' paths over the ink, each drawn at the ink's own stroke width and a little
more (MARGIN). The strokes must cover the ink (MAX_UNCOVERED): strokes of another image, or of this one in
other pixels, would otherwise read part of it silently. /predict checks that alone (check_cover:
digit_image) and reads one digit from all its ink as ever; /read groups the strokes
(handler/strokes.py), and units() finds the ink of those whose group it must share among them.
"""

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from .decode import NO_STROKES, decode, payload_to_drawing
from .errors import InputError
from .ink import INK_THRESHOLD, area_and_outline, bbox, ink_map, is_speck, reduction, stroke_width
from .mnist_form import to_mnist

# Bounded work (docs/limits.md): 16 digits of 4 strokes, their points 2 px apart on the page's 560x280
# (the page thins what it sends to that: web/static/js/drawing.js), with room to spare.
MAX_STROKES = 64
MAX_POINTS = 4096
# A stroke's mask reaches this many ink-map pixels past the ink's mean half width: antialiasing, a pen's
# pressure, the page's curves between the points it sends.
MARGIN = 1.5
MAX_UNCOVERED = 0.1  # share of the ink no stroke's mask covers, above which the strokes are not its own
SIMPLER = 2  # quarter pixels: how far from a stroke's path its simplified path for that check may run
_NUMBERS = {int, float}  # the types JSON's numbers parse to (bool, JSON's true and false, is not one)


@dataclass
class Unit:
    """Ink of one stroke (or of a few together): its box in the ink map (top, bottom, left, right), its
    mask there, and the strokes' paths (in quarter pixels of the ink map: cv2's shift=2)."""

    top: int
    bottom: int
    left: int
    right: int
    mask: np.ndarray
    paths: list


def checked(raw, width: int, height: int) -> list[np.ndarray]:
    """The strokes as sent (JSON, parsed), as float arrays (n, 3) of x, y, t with the points clipped to
    an image of width x height; InputError naming what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise InputError("strokes must be a non-empty list of strokes, each a list of [x, y, t] points")
    if len(raw) > MAX_STROKES:
        raise InputError(f"{len(raw)} strokes: at most {MAX_STROKES} are read")
    for i, stroke in enumerate(raw):
        if not isinstance(stroke, list) or not stroke:
            raise InputError(f"strokes[{i}] must be a non-empty list of [x, y, t] points")
    count = sum(map(len, raw))  # before any list is made of them: a body may hold a million
    if count > MAX_POINTS:
        raise InputError(f"{count} points in the strokes: at most {MAX_POINTS} are read")
    points = list(itertools.chain.from_iterable(raw))
    # Every point at once, where map() and numpy work in C: strokes are short, and a stroke at a time was
    # mostly per-array overhead (a quarter of the strokes' share of a /read). Anything wrong: _fault says where.
    flat = _numbers(points)
    if flat is None or not np.isfinite(flat).all():
        _fault(raw)
    falls = flat[1:, 2] < flat[:-1, 2]
    falls[np.cumsum([len(stroke) for stroke in raw[:-1]], dtype=np.intp) - 1] = False  # stroke to stroke
    if falls.any():
        _fault(raw)
    xy = flat[:, :2]
    np.minimum(np.maximum(xy, 0, out=xy), np.array([width, height], np.float64), out=xy)
    return _split(flat, raw)


def _split(flat: np.ndarray, strokes: list) -> list[np.ndarray]:
    """The rows of `flat` (every stroke's points, one stroke after another) per stroke, as views."""
    ends = list(itertools.accumulate(map(len, strokes)))
    return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _numbers(points: list) -> np.ndarray | None:
    """The points as one float array (n, 3); None unless every point is three numbers, each within a
    float's range."""
    if set(map(type, points)) != {list} or set(map(len, points)) != {3}:
        return None
    values = list(itertools.chain.from_iterable(points))
    if set(map(type, values)) - _NUMBERS:
        return None
    try:
        return np.fromiter(values, np.float64, len(values)).reshape(-1, 3)
    except OverflowError:  # an integer past a float's range
        return None


def _fault(raw: list) -> None:
    """InputError for the first stroke that is wrong (checked() found one), naming it and what."""
    for i, stroke in enumerate(raw):
        at = next((j for j, p in enumerate(stroke) if not _point(p)), None)
        if at is not None:
            raise InputError(f"strokes[{i}][{at}] must be [x, y, t]: three numbers")
        values = _numbers(stroke)
        if values is None or not np.isfinite(values).all():
            raise InputError(f"strokes[{i}] holds a number that is not finite (NaN, Infinity or too large)")
        if (np.diff(values[:, 2]) < 0).any():
            raise InputError(f"strokes[{i}]: t decreases; a stroke's times never go back")
    raise AssertionError("checked() found a fault that _fault() does not")


def _point(p) -> bool:
    return type(p) is list and len(p) == 3 and all(type(v) in _NUMBERS for v in p)


def digit_image(payload) -> np.ndarray:
    """/predict's image of a request body, handler/mnist_form.py preprocess()'s: strokes beside the image
    are checked as /read checks them and change nothing, one digit being read from all its ink."""
    image, strokes = payload_to_drawing(payload)
    pixels = decode(image)
    ink = ink_map(pixels)
    if strokes is not NO_STROKES:
        check_cover(checked(strokes, pixels.shape[1], pixels.shape[0]), ink, reduction(pixels.shape))
    return to_mnist(ink)


def check_cover(strokes: list, ink: np.ndarray, scale: int) -> None:
    """over_ink()'s check alone: /predict reads all the ink as one digit, so its strokes need no more."""
    mask = ink > INK_THRESHOLD * 255
    if mask.any():
        over_ink(strokes, mask, stroke_width(mask), scale)


@dataclass
class Pen:
    """The strokes over a drawing's ink: its mask (ink map pixels past INK_THRESHOLD), the width a
    stroke's mask is drawn at, every stroke's points one after another and each stroke's path (its
    points, a view), in quarter pixels of the ink map (cv2's shift=2)."""

    mask: np.ndarray
    thickness: int
    points: np.ndarray
    paths: list


def over_ink(strokes: list, mask: np.ndarray, width: float, scale: int) -> Pen:
    """checked() strokes over a drawing's ink (`mask`, of the ink map, `scale` image pixels a pixel; `width`
    its mean stroke width); InputError when they leave more than MAX_UNCOVERED of it uncovered."""
    points = np.round(np.concatenate(strokes)[:, :2] * (4 / scale)).astype(np.int32)
    paths = _split(points, strokes)
    pen = Pen(mask, max(1, int(round(width + 2 * MARGIN))), points, paths)
    _check_covered(mask, paths, pen.thickness)
    return pen


def units(pen: Pen, strokes: list) -> list[Unit]:
    """The unit of ink of each of these strokes (their indices): a stroke whose ink is a speck joins the
    unit it overlaps (a short stroke of a digit is one piece of ink with it), or goes (a tap on its own,
    as to_mnist() leaves it out), and so does a stroke over no ink."""
    found, specks = [], []
    for k in strokes:
        unit = stroke_unit(pen, k)
        own = unit.mask & pen.mask[unit.top : unit.bottom, unit.left : unit.right]
        if own.any():
            side = min(pen.mask.shape)
            (specks if is_speck(bbox(own), *area_and_outline(own), side) else found).append(unit)
    for speck in specks:
        overlaps = [_overlap(speck, unit) for unit in found]
        if overlaps and max(overlaps):
            best = overlaps.index(max(overlaps))
            found[best] = together([found[best], speck])
    return found


def _check_covered(mask: np.ndarray, paths: list, thickness: int) -> None:
    """The share of the ink left once every stroke's mask is erased from it. The paths are simplified
    first (their points within SIMPLER of the line between the kept ones): the page sends a point every
    work pixel or so, each a round cap of the thick line, and drawing those was most of what checking a
    /read's strokes cost; half of them draw the same mask to within SIMPLER, well inside MARGIN."""
    left = mask.view(np.uint8).copy()
    draw(left, [cv2.approxPolyDP(path, SIMPLER, False).reshape(-1, 2) for path in paths], thickness, 0)
    uncovered = cv2.countNonZero(left) / cv2.countNonZero(mask.view(np.uint8))
    if uncovered > MAX_UNCOVERED:
        raise InputError(
            f"the strokes leave {uncovered:.0%} of the drawing's ink uncovered: send the strokes of the "
            "image sent, in its pixels"
        )


def draw(canvas: np.ndarray, paths: list, thickness: int, value: int = 1) -> None:
    """Paths (quarter pixels) at this width, round at their ends, as the page's brush draws them. OpenCV
    caps a thick polyline's ends round itself, but draws nothing of a path of one point: a tap."""
    cv2.polylines(canvas, paths, False, value, thickness, cv2.LINE_8, shift=2)
    for path in paths:
        if len(path) == 1:
            centre = (int(path[0, 0]), int(path[0, 1]))
            cv2.circle(canvas, centre, thickness * 2, value, -1, cv2.LINE_8, shift=2)


def stroke_unit(pen: Pen, k: int) -> Unit:
    """Stroke k's unit: its path drawn at the pen's thickness, in the box of it."""
    path, thickness, shape = pen.paths[k], pen.thickness, pen.mask.shape
    reach = thickness // 2 + 1
    left, top = np.maximum(path.min(axis=0) // 4 - reach, 0)
    right, bottom = np.minimum(path.max(axis=0) // 4 + reach + 1, (shape[1], shape[0]))
    canvas = np.zeros((bottom - top, right - left), np.uint8)
    draw(canvas, [path - 4 * np.array([left, top], np.int32)], thickness)
    return Unit(int(top), int(bottom), int(left), int(right), canvas.view(bool), [path])


def together(units: list) -> Unit:
    """The units as one: their masks together in the box of them all, and their paths."""
    top, bottom = min(u.top for u in units), max(u.bottom for u in units)
    left, right = min(u.left for u in units), max(u.right for u in units)
    mask = np.zeros((bottom - top, right - left), bool)
    for u in units:
        mask[u.top - top : u.bottom - top, u.left - left : u.right - left] |= u.mask
    return Unit(top, bottom, left, right, mask, [path for u in units for path in u.paths])


def _overlap(a: Unit, b: Unit) -> int:
    """The pixels two masks share."""
    top, bottom = max(a.top, b.top), min(a.bottom, b.bottom)
    left, right = max(a.left, b.left), min(a.right, b.right)
    if top >= bottom or left >= right:
        return 0
    return np.count_nonzero(
        a.mask[top - a.top : bottom - a.top, left - a.left : right - a.left]
        & b.mask[top - b.top : bottom - b.top, left - b.left : right - b.left]
    )
