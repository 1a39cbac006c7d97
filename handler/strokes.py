"""A number's ink grouped into digits by the pen's strokes (POST /read with "strokes"; docs/reading.md).
Touching digits are one piece of ink, where the picture alone leaves the cutter to guess (handler/
segment.py); the page drew every stroke itself, and says which ink is whose. The image stays what is
read: the strokes only say which of its pixels belong together.

stroke_groups() takes the groups of ink as a number without strokes has them (handler/groups.py: pieces
apart in columns are different digits, and so on), puts each stroke in the group that holds most of the
ink under its points, and then, per group of several strokes (handler/pen.py units: each stroke's ink):
  - shares the group's own ink among its strokes, each pixel to the stroke whose path runs nearest: a
    digit's picture keeps none of a touching neighbour's ink but where their strokes cross;
  - orders the strokes left to right by their middles (a 7's bar drawn after the next digit sits with
    its 7), and lists the runs of consecutive strokes that may be one digit (up to MAX_RUN stretches
    between places a digit may end, never between a stroke and one in its columns: HELD; no wider than
    MAX_RUN_ASPECT of their height): the model's scores choose among them, as among cuts;
  - a group narrow for one digit is one digit, as without strokes, unless its strokes fall side by side
    (a 1 touching an 8); one stroke alone is the group of ink itself, one digit; a stroke wider than
    WIDE_STROKE of the group's height, alone or among others, may be two digits in one stroke, and is
    cut as a group of ink is.
The constants were chosen on writers 17-20 (bench/read_accuracy.py --writers tuning; docs/reading.md).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .groups import Grouped, grouped
from .ink import bbox
from .pen import Pen, Unit, draw, over_ink, stroke_unit, units

MAX_RUN = 3  # strokes of one digit at most (pen digits have 1-3; 4 read the same, at more pieces)
MAX_RUN_ASPECT = 1.4  # a run of strokes wider than this times its height is not one digit
SPLIT_ASPECT = 0.9  # a group narrower than this times its height is one digit (handler/segment.py's)
# ... unless its strokes fall into two sets whose columns overlap by less than this share of the narrower
# set's: one digit's strokes overlap (a 4's two, a 5's flag, a 7's bar; 97% of writers 17-20's digits of
# several strokes by half or more), a 1 touching an 8 does not.
SIDE_BY_SIDE = 0.5
HELD = 0.9  # a stroke this much in another's columns is of its digit (a slashed 0 split read "10")
WIDE_STROKE = 1.3  # a stroke wider than this times its group's height may be two digits: it is cut
# A narrow group's strokes whose paths' columns overlap by this share at every split are one digit's
# without building their units (_plainly_one). The units' shares of the ink differ from their paths'
# columns, but not by that much: of 1,808 narrow groups of several strokes in 3,000 numbers of writers
# 1-20, the 53 their units found side by side had paths overlapping by 0.26 at most. At 0.5, 92% of
# such groups are decided without units (83% at 0.7, the first choice), each sparing ~0.2 ms.
PLAINLY = 0.5


@dataclass
class Group:
    """A group of ink (`whole`: its box and its own ink, handler/groups.py) and its strokes' units, left
    to right: runs[i] = (a, b) says units a..b-1 may be one digit (every unit alone is a run; all of them
    together is the whole); wide[k]: unit k may hold two digits, and is cut as a group of ink is."""

    whole: Unit
    units: list
    runs: list
    wide: list


def stroke_groups(strokes: list, ink: np.ndarray, scale: int) -> list[Group]:
    """The groups of ink, left to right, each with the units of the strokes drawn in it (handler/pen.py
    checked() strokes; `ink` the ink map, `scale` image pixels a pixel). The errors of digit_groups (no
    digit drawn, two lines) and of over_ink (the strokes leave the ink uncovered)."""
    found = grouped(ink)
    pen = over_ink(strokes, found.mask, found.width, scale)
    members = [[] for _ in found.groups]
    for k, g in enumerate(_votes(found, pen)):
        if g:  # else ink that digit_groups left out as stray: so is the stroke
            members[g - 1].append(k)
    wholes = (Unit(*group, []) for group in found.groups)
    return [_of(whole, pen, mine) for whole, mine in zip(wholes, members, strict=True)]


def _of(whole: Unit, pen: Pen, strokes: list) -> Group:
    """The group of ink `whole` with these strokes (indices) drawn in it. A group of one stroke, or narrow
    and plainly of one digit's strokes, is its ink, as without strokes: no unit is built (most groups)."""
    height, width = whole.mask.shape
    if len(strokes) <= 1:
        return _one_stroke(whole) if strokes else _alone(whole)
    if width <= SPLIT_ASPECT * height and _plainly_one(pen, strokes):
        return _one_digit(whole)
    return _group(whole, units(pen, strokes))


def _votes(found: Grouped, pen: Pen) -> list[int]:
    """Per stroke, the group (from 1) that holds most of its ink, 0 for none: by the pieces of ink under
    its points (a path runs down the middle of its ink), all strokes at once; by the stroke's whole unit
    where none of its points falls on a group's ink."""
    height, width = found.labels.shape
    points, groups = pen.points >> 2, len(found.groups) + 1  # quarter pixels -> pixels
    # checked() clipped the points to the image, which may overhang the ink map by a pixel (ink.py _reduced)
    under = found.group_of[
        found.labels[np.minimum(points[:, 1], height - 1), np.minimum(points[:, 0], width - 1)]
    ]
    stroke = np.repeat(np.arange(len(pen.paths)), [len(path) for path in pen.paths])
    votes = np.bincount(stroke * groups + under, minlength=len(pen.paths) * groups)
    votes = votes.reshape(len(pen.paths), groups)[:, 1:]
    chosen = np.where(votes.any(axis=1), votes.argmax(axis=1) + 1, 0)
    for k in np.flatnonzero(chosen == 0):
        unit = stroke_unit(pen, k)
        box = (slice(unit.top, unit.bottom), slice(unit.left, unit.right))
        mine = np.bincount(found.group_of[found.labels[box][unit.mask & pen.mask[box]]], minlength=groups)
        chosen[k] = mine[1:].argmax() + 1 if mine[1:].any() else 0
    return chosen.tolist()


def _plainly_one(pen: Pen, strokes: list) -> bool:
    """Whether these strokes are plainly not side by side (_side_by_side): at every split of them, left
    to right, their paths' columns overlap by PLAINLY of the narrower set's. A unit's ink reaches past
    its path by half a stroke's width on each side, which only adds to the overlap; under PLAINLY, the
    units are built and their shares of the ink decide."""
    columns = ((int(pen.paths[k][:, 0].min()), int(pen.paths[k][:, 0].max())) for k in strokes)
    spans = sorted(columns, key=sum)  # by their middles, as _place orders units
    return all(_column_share(spans[:k], spans[k:]) >= PLAINLY for k in range(1, len(spans)))


def _alone(whole: Unit) -> Group:
    """A group read as its ink alone, as without strokes: cut where it is wide enough for two digits."""
    height, width = whole.mask.shape
    return _one_digit(whole, wide=width > SPLIT_ASPECT * height)


def _one_stroke(whole: Unit) -> Group:
    """A group of one stroke: one digit, cut as a group of ink is only where the stroke may be two digits
    written without lifting the pen (WIDE_STROKE, as for a stroke among others). The picture's
    SPLIT_ASPECT cuts most 0s, 2s and 7s into parts for the model to turn down: four in five of the
    candidates of numbers written apart, which the strokes spare (docs/reading.md)."""
    height, width = whole.mask.shape
    return _one_digit(whole, wide=width > WIDE_STROKE * height)


def _one_digit(whole: Unit, wide: bool = False) -> Group:
    """The group as one run of its whole ink (cut as a group of ink is when `wide`)."""
    return Group(whole, [whole], [(0, 1)], [wide])


def _group(whole: Unit, members: list) -> Group:
    height, width = whole.mask.shape
    if len(members) > 1:  # in order of place, not of drawing: the order they came in changes nothing
        members = sorted(_shared(whole, sorted(members, key=_place)), key=_place)
    if len(members) <= 1:
        return _one_stroke(whole) if members else _alone(whole)
    if width <= SPLIT_ASPECT * height and not _side_by_side(members):
        return _one_digit(whole)
    # Where a digit may end: not between two strokes of which one lies in the other's columns (a slashed
    # 0's slash, a 5's flag). Runs go from one such place to another, at most MAX_RUN places on.
    ends = [0, *(k for k in range(1, len(members)) if not _held(members[:k], members[k:])), len(members)]
    runs = [
        (a, b)
        for i, a in enumerate(ends)
        for b in ends[i + 1 : i + 1 + MAX_RUN]
        if b == ends[i + 1] or _fits(members[a:b])
    ]
    return Group(whole, members, runs, [u.right - u.left > WIDE_STROKE * height for u in members])


def _held(left: list, right: list) -> bool:
    """Whether a unit of one side lies (HELD of its width) in the columns of a unit of the other."""
    return any(_shared_columns([a], [b]) >= HELD for a in left for b in right)


def _place(unit: Unit) -> tuple:
    return unit.left + unit.right, unit.top + unit.bottom, unit.right - unit.left


def _shared(whole: Unit, members: list) -> list:
    """The group's own ink shared among its units: each pixel to the unit whose path runs nearest (a
    distance transform per unit). A unit left with no ink goes."""
    height, width = whole.mask.shape
    origin = 4 * np.array([whole.left, whole.top], np.int32)
    distances = []
    for unit in members:
        canvas = np.ones((height, width), np.uint8)
        draw(canvas, [path - origin for path in unit.paths], 1, 0)
        distances.append(cv2.distanceTransform(canvas, cv2.DIST_L2, 3))
    nearest = np.argmin(distances, axis=0)
    shared = []
    for k, unit in enumerate(members):
        mine = whole.mask & (nearest == k)
        if mine.any():
            top, bottom, left, right = bbox(mine)
            box = (whole.top + top, whole.top + bottom, whole.left + left, whole.left + right)
            shared.append(Unit(*box, mine[top:bottom, left:right], unit.paths))
    return shared


def _side_by_side(members: list) -> bool:
    """Whether the units (left to right) fall into two sets whose columns overlap by under SIDE_BY_SIDE
    of the narrower set's."""
    return any(_shared_columns(members[:k], members[k:]) < SIDE_BY_SIDE for k in range(1, len(members)))


def _shared_columns(these: list, those: list) -> float:
    """The share of the narrower of two sets of units' column ranges that both cover."""
    return _column_share([(u.left, u.right) for u in these], [(u.left, u.right) for u in those])


def _column_share(these: list, those: list) -> float:
    """The share of the narrower of two sets of column spans (start, end) that both cover."""
    a0, a1 = min(s[0] for s in these), max(s[1] for s in these)
    b0, b1 = min(s[0] for s in those), max(s[1] for s in those)
    return max(0, min(a1, b1) - max(a0, b0)) / max(1, min(a1 - a0, b1 - b0))


def _fits(members: list) -> bool:
    top, bottom = min(u.top for u in members), max(u.bottom for u in members)
    return max(u.right for u in members) - min(u.left for u in members) <= MAX_RUN_ASPECT * (bottom - top)
