"""A number's ink grouped into its digits (POST /read; docs/reading.md): the pieces of ink, less specks
and stray marks, merged where they overlap in columns as the strokes of one digit do, left to right.
Writing on more than one line is refused here (TwoLinesError). handler/segment.py cuts the groups that
may be digits that touch.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import NoDigitError, TwoLinesError
from .ink import INK_THRESHOLD, PLUS, bbox, is_speck, mean_width, square
from .mnist_form import STRAY_SHARE

# Pieces of ink whose column ranges overlap by this share of the narrower one are strokes of one digit: a
# 5's flag, a 4 or a 7 in two strokes, a crossed 7, an 8 in two halves. Digits written apart do not.
MERGE_OVERLAP = 0.5
# Writing on two lines (_one_line): bands of rows this share of the tallest, gaps this share of a band's height.
LINE_SHARE = 0.5
LINE_GAP = 0.25


@dataclass
class Grouped:
    """digit_groups() and what it found on the way, for the pen's strokes (handler/strokes.py): the ink's
    mask (past INK_THRESHOLD), its connected pieces (`labels`, as OpenCV numbers them), the group (from 1)
    each piece went to (`group_of`, by label: 0 for none, a speck or a stray mark), and the ink's mean
    stroke width (ink.stroke_width of the mask, from the same pass)."""

    groups: list
    mask: np.ndarray
    labels: np.ndarray
    group_of: np.ndarray
    width: float


def digit_groups(ink: np.ndarray) -> list:
    """The drawing's pieces of ink grouped into digits, left to right: (top, bottom, left, right, mask of
    the group's own ink in that box). Specks are left out, and so are small stray marks (under STRAY_SHARE
    of the ink and under half the height of the tallest group), as to_mnist() leaves them out of a digit."""
    return grouped(ink).groups


def grouped(ink: np.ndarray) -> Grouped:
    """digit_groups(), with what it found on the way (Grouped)."""
    mask = (ink > INK_THRESHOLD * 255).view(np.uint8)
    if not mask.any():
        raise NoDigitError("no digit drawn: the canvas is blank")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count - 1 > 256:  # a spray of noise: one piece, as to_mnist() judges it
        labels, stats = mask.astype(np.int32), np.array([[0, 0, 0, 0, 0], _stat_of(mask)])
        count = 2
    inner = cv2.erode(mask, PLUS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = np.bincount(labels[(mask > 0) & (inner == 0)], minlength=count)
    side = min(ink.shape)
    pieces = []
    for label in range(1, count):
        left, top, width, height, area = stats[label]
        box = (top, top + height, left, left + width)
        if not is_speck(box, int(area), int(outline[label]), side):
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
    group_of = np.zeros(count, np.int32)
    for g, (*_, own, _) in enumerate(kept, 1):
        group_of[own] = g
    groups = [
        (top, bottom, left, right, _own_ink(labels[top:bottom, left:right], own, count))
        for left, right, top, bottom, own, _ in kept
    ]
    width = mean_width(int(stats[1:, cv2.CC_STAT_AREA].sum()), int(outline[1:].sum()))
    return Grouped(groups, mask.view(bool), labels, group_of, width)


def _own_ink(labels: np.ndarray, own: list, count: int) -> np.ndarray:
    """A group's pixels: its pieces, and the antialiased fringe around them that no other piece has."""
    is_own = np.zeros(count, bool)  # a table looked up per pixel: a third of np.isin's time
    is_own[own] = True
    mine = is_own[labels]
    fringe = cv2.dilate(mine.view(np.uint8), square(3)).view(bool) & (labels == 0)
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
    top, bottom, left, right = bbox(mask)
    return [left, top, right - left, bottom - top, cv2.countNonZero(mask)]
