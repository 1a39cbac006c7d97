"""A drawing of a whole number cut into the pieces the model is to score (POST /read; docs/reading.md):
its groups of ink (handler/groups.py), and where a group is wide enough to be digits that touch, the
parts of it between candidate cuts, each a path from top to bottom; or, with the pen's strokes beside
the image, the runs of strokes that may be one digit (handler/strokes.py). Every piece goes into MNIST's
form as one digit does (handler/mnist_form.py); the model's scores choose the reading (handler/answers.py
choose). The work is bounded (docs/limits.md): at most MAX_DIGITS groups and MAX_CANDIDATES pieces.
"""

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .decode import NO_STROKES, decode, payload_to_drawing
from .errors import NoDigitError, TooManyDigitsError
from .groups import digit_groups
from .ink import INK_THRESHOLD, bbox, ink_map, reduction
from .mnist_form import to_mnist
from .pen import checked, together
from .strokes import stroke_groups

MAX_DIGITS = 16
# A number's canvas is worked at up to MAX_STRIP times WORK_SIDE (handler/ink.py) on its longer side.
MAX_STRIP = 8
# A group of ink wider than this share of its height may be digits that touch: cuts are tried, and the
# model's scores over the whole string choose (handler/answers.py choose()). Most single digits are
# narrower than tall.
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
# A drawing of several groups no wider than this times its height may be one digit whose strokes stand
# apart (a 5's flag beside its body, a 4 in two strokes that do not meet): it is also a candidate whole,
# /predict's image of it (handler/answers.py choose() weighs it against the groups read apart). Groups
# of ink merge only where their columns overlap by half (handler/groups.py MERGE_OVERLAP); 7 of writers
# 17-20's 1,994 single digits drawn alone were two groups, each read as two digits before this.
ONE_DIGIT_ASPECT = 1.2


@dataclass
class Candidates:
    """What read_candidates() finds: every piece the model is to score (the groups of ink, and the parts of
    a wide group between candidate cuts), as one batch. spans[i] = (group, first node, last node): a group
    of ink has nodes 0..nodes[g]-1 (its left edge, its cuts, its right edge) and candidate i covers it
    from one node to another; a reading of the group is a path of candidates from its first node to its
    last. boxes are [x, y, w, h] in the drawing's own pixels. `one`: the candidate that is the whole
    drawing of several groups read as one digit (ONE_DIGIT_ASPECT), outside every group's spans; None
    where there is none. `alone`: the candidate that is exactly /predict's image of the drawing (the
    whole of one group drawn alone, or `one`): its digit is read as /predict reads it."""

    images: np.ndarray  # (n, 28, 28) float32, as preprocess() gives one digit
    boxes: list
    spans: list
    nodes: list
    one: int | None = None
    alone: int | None = None  # the candidate that is /predict's image of the whole drawing, if any


def read_candidates(payload) -> Candidates:
    """Request body -> the candidate pieces of a number, or InputError (TwoLinesError, TooManyDigitsError,
    NoDigitError and the rest as preprocess() raises them). With the pen's strokes, their groups
    (handler/strokes.py); without, the groups of the ink."""
    image, strokes = payload_to_drawing(payload)
    pixels = decode(image)
    # Shrunk by the shorter side: a 560x280 canvas keeps the same detail per digit as a 280x280 one.
    ink = ink_map(pixels, side=number_side)
    scale = reduction(pixels.shape, number_side)
    drawing = _Drawing(pixels, ink, scale)
    if strokes is not NO_STROKES:
        groups = stroke_groups(checked(strokes, pixels.shape[1], pixels.shape[0]), ink, scale)
        _check([group.whole.mask for group in groups])
        boxes = [(g.whole.top, g.whole.bottom, g.whole.left, g.whole.right) for g in groups]
        return _finished(_one_digit(_from_strokes(groups, drawing), boxes, drawing))
    groups = digit_groups(ink)
    _check([mask for *_, mask in groups])
    wide = [m.shape[1] > SPLIT_ASPECT * m.shape[0] for *_, m in groups]
    wide_width = sum(m.shape[1] for (*_, m), w in zip(groups, wide, strict=True) if w)
    share = (MAX_CANDIDATES - wide.count(False)) / max(1, wide_width)  # candidates per column, wide groups
    found = Candidates([], [], [], [])
    for g, (top, bottom, left, right, mask) in enumerate(groups):
        piece = np.where(mask, ink[top:bottom, left:right], 0)
        budget = share * mask.shape[1] if wide[g] else 0
        found.nodes.append(_cut(found, (g, 0), (top, left, piece, mask), budget, drawing, len(groups) == 1))
    return _finished(_one_digit(found, [group[:4] for group in groups], drawing))


class _Drawing(NamedTuple):
    pixels: np.ndarray  # as decoded
    ink: np.ndarray  # its ink map, for a number
    scale: int  # pixels per ink map pixel


def _from_strokes(groups: list, drawing: _Drawing) -> Candidates:
    """The candidates of the strokes' groups: per group, every run of units that may be one digit (its
    share of the group's ink only, so a touching neighbour is not in its picture), and the cuts of a unit
    that may be two digits, their nodes between the unit's. The budget shared as for groups of ink."""
    wide = [u for g in groups for u, w in zip(g.units, g.wide, strict=True) if w]
    runs = sum(len(g.runs) for g in groups)
    share = (MAX_CANDIDATES - runs) / max(1, sum(u.right - u.left for u in wide))
    found = Candidates([], [], [], [])
    for g, group in enumerate(groups):
        nodes, alone = [0], len(groups) == 1 and len(group.units) == 1
        for unit, cut in zip(group.units, group.wide, strict=True):
            if cut:  # one stroke through two digits: cut as a group of ink is, between its nodes
                piece = np.where(unit.mask, drawing.ink[unit.top : unit.bottom, unit.left : unit.right], 0)
                where, budget = (unit.top, unit.left, piece, unit.mask), share * piece.shape[1]
                nodes.append(nodes[-1] + _cut(found, (g, nodes[-1]), where, budget, drawing, alone) - 1)
            else:
                nodes.append(nodes[-1] + 1)
        found.nodes.append(nodes[-1] + 1)
        for a, b in group.runs:
            if b == a + 1 and group.wide[a]:
                continue  # its whole is among its cuts
            run = group.whole if (a, b) == (0, len(group.units)) else together(group.units[a:b])
            part = np.where(run.mask, drawing.ink[run.top : run.bottom, run.left : run.right], 0)
            whole = len(groups) == 1 and (a, b) == (0, len(group.units))
            _add(found, (g, nodes[a], nodes[b]), (run.top, run.left, part), drawing, whole)
    return found


def _cut(found: Candidates, at: tuple, where: tuple, budget: float, drawing: _Drawing, alone: bool) -> int:
    """Adds the candidate parts of a group of ink (`where`: its top, left, its ink and its mask), cut
    into up to `budget` candidates (0: the whole only), as spans of group g from node n on (`at`: g, n);
    the nodes it used. `alone`: the group is all that is drawn (one digit drawn alone)."""
    (g, node), (top, left, piece, mask) = at, where
    height, width = mask.shape
    starts = _cuts(mask, budget) if budget else []
    cuts = _paths(mask, starts) if starts else []
    # Each cut a path from top to bottom: where touching digits overlap, no straight line parts them.
    paths = [np.zeros(height, np.int64), *cuts, np.full(height, width)]
    columns = np.arange(width)
    for i, j in _parts([0, *starts, width], height):  # as _cuts counted them: within budget
        whole = (i, j) == (0, len(paths) - 1)
        lo, hi = int(paths[i].min()), int(paths[j].max())  # the part's columns, no more
        window = columns[lo:hi]
        between = (window >= paths[i][:, None]) & (window < paths[j][:, None])
        part = np.where(between, piece[:, lo:hi], 0)
        _add(found, (g, node + i, node + j), (top, left + lo, part), drawing, alone and whole)
    return len(paths)


def _one_digit(found: Candidates, boxes: list, drawing: _Drawing) -> Candidates:
    """Adds the whole drawing as one digit's candidate (`one`) when it has several groups (boxes: each
    one's top, bottom, left, right in the ink map) and is no wider than ONE_DIGIT_ASPECT of its height."""
    top, bottom = min(b[0] for b in boxes), max(b[1] for b in boxes)
    left, right = min(b[2] for b in boxes), max(b[3] for b in boxes)
    narrow = right - left <= ONE_DIGIT_ASPECT * (bottom - top)
    if len(boxes) > 1 and narrow and len(found.images) < MAX_CANDIDATES:
        part = drawing.ink[top:bottom, left:right]
        count = len(found.images)
        _add(found, (len(boxes), 0, 1), (top, left, part), drawing, True)
        found.one = count if len(found.images) > count else None
    return found


def _add(found: Candidates, span: tuple, where: tuple, drawing: _Drawing, alone: bool) -> None:
    """A candidate: the part (`where`: its top and left in the ink map, its ink) in MNIST's form, or, for
    one digit drawn alone, exactly the image /predict makes of the drawing (its resolution, its strays).
    A part of only specks is never a digit: no candidate."""
    top, left, part = where
    try:
        image = to_mnist(ink_map(drawing.pixels)) if alone else to_mnist(part, min(drawing.ink.shape))
    except NoDigitError:
        return
    y0, y1, x0, x1 = bbox(part > INK_THRESHOLD * 255)
    if alone:
        found.alone = len(found.images)
    found.images.append(image)
    found.boxes.append(_box(top + y0, top + y1, left + x0, left + x1, drawing.scale))
    found.spans.append(span)


def _finished(found: Candidates) -> Candidates:
    if len(found.images) > MAX_CANDIDATES:
        raise TooManyDigitsError("too much writing in one piece to cut into digits")
    if not found.images:
        raise NoDigitError("no digit drawn: only specks on the canvas")
    found.images = np.stack(found.images)
    return found


def _check(masks: list) -> None:
    """TooManyDigitsError for more groups of ink than digits read, or one too wide to tell digits apart."""
    if len(masks) > MAX_DIGITS:
        raise TooManyDigitsError(
            f"more than {MAX_DIGITS} pieces of writing: at most {MAX_DIGITS} digits are read"
        )
    for height, width in (mask.shape for mask in masks):
        if width > MAX_GROUP_ASPECT * height:
            raise TooManyDigitsError(
                f"one stroke {width / height:.0f} times as wide as it is tall: not digits that can be told apart"
            )


def number_side(shape) -> int:
    """The side WORK_SIDE applies to for a number: the shorter, but a strip longer than MAX_STRIP times
    it is shrunk as if its shorter side were that much longer (the work stays bounded: docs/limits.md)."""
    return max(min(shape), max(shape) // MAX_STRIP)


def _box(top, bottom, left, right, scale) -> list:
    return [int(left * scale), int(top * scale), int((right - left) * scale), int((bottom - top) * scale)]


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
