"""Closed and curved shapes that are not digits (train/nondigits.py SHAPES), drawn with train/shapes.py's
helpers: y up, any scale.

Each is kept away from a digit's reading: nothing that is one plain loop (a 0), a loop with a tail (a 6 or
a 9), two loops (an 8) or one or two lines (a 1 or a 7).
"""

import math

import numpy as np

from train.shapes import jitter, rotated, smooth


def leaf(rng):
    """An almond outline with its midrib and stem: the outline alone would pass for a 0, so never alone."""
    width, bend = rng.uniform(0.25, 0.45), rng.uniform(-0.15, 0.15)
    t = np.linspace(0, 1, 17)
    upper = [(x, bend * math.sin(math.pi * x) + width * math.sin(math.pi * x)) for x in t]
    lower = [(x, bend * math.sin(math.pi * x) - width * math.sin(math.pi * x)) for x in t[::-1]]
    outline = jitter(upper + lower[1:], rng, 0.015)
    midrib = [(-rng.uniform(0.15, 0.3), 0.0), *[(x, bend * math.sin(math.pi * x)) for x in t[:-3]]]
    return rotated([outline, jitter(midrib, rng, 0.01)], rng.uniform(0, 2 * math.pi))


def crescent(rng):
    """A moon: an outer arc and an inner one meeting at sharp horns, 0.25-0.5 of the radius thick at the
    middle and closed; thinner it is a ( or a C (a 1), with a smaller bite a 0 or a C."""
    horn, thickness = rng.uniform(0.6, 1.1), rng.uniform(0.25, 0.5)
    outer = [(math.cos(a), math.sin(a)) for a in np.linspace(horn, 2 * math.pi - horn, 24)]
    (x_b, y_b), y_t = outer[-1], outer[0][1]
    depth = x_b + 1 - thickness  # the inner arc reaches back to -1 + thickness at its middle
    inner = [
        (x_b - depth * (1 - (2 * s - 1) ** 2), y_b + (y_t - y_b) * s) for s in (k / 16 for k in range(1, 16))
    ]
    points = jitter(outer + inner, rng, 0.015)
    return rotated([points + points[:1]], rng.uniform(0, 2 * math.pi))


def cloud(rng):
    """A closed outline of 5-9 round bumps, each bulging at least a quarter of the radius (a smoother
    outline would be a 0)."""
    n, out = rng.randint(5, 9), []
    bulge = rng.uniform(0.25, 0.45)
    squash = rng.uniform(0.6, 1.0)
    for k in range(n):
        a0, a1 = 2 * math.pi * k / n, 2 * math.pi * (k + 1) / n
        for a in np.linspace(a0, a1, 8, endpoint=False):
            r = 1 + bulge * math.sin(math.pi * (a - a0) / (a1 - a0))
            out.append((r * math.cos(a), squash * r * math.sin(a)))
    points = jitter(out, rng, 0.012)
    return rotated([points + points[:1]], rng.uniform(0, 2 * math.pi))


def spiral(rng):
    """A spiral of 2.5-4 turns: one turn is a 6, a 9 or an @-like loop with a tail, so never fewer."""
    turns, direction = rng.uniform(2.5, 4), rng.choice([-1, 1])
    steps = int(24 * turns)
    points = [
        (
            (0.08 + k / steps) * math.cos(direction * 2 * math.pi * turns * k / steps),
            (0.08 + k / steps) * math.sin(direction * 2 * math.pi * turns * k / steps),
        )
        for k in range(steps + 1)
    ]
    return rotated([jitter(points, rng, 0.008)], rng.uniform(0, 2 * math.pi))


def blob(rng):
    """A smooth closed outline of three or more lobes (radii alternately far and near): one lobe is a 0,
    two an 8 or a peanut-shaped 0."""
    lobes = rng.randint(3, 5)
    control = []
    for k in range(2 * lobes):
        r = rng.uniform(0.8, 1.0) if k % 2 == 0 else rng.uniform(0.35, 0.6)
        a = 2 * math.pi * (k + rng.uniform(-0.2, 0.2)) / (2 * lobes)
        control.append((r * math.cos(a), r * math.sin(a)))
    points = smooth(control + control[:3])[8:-8]  # a closed curve: wrap the control points round
    return rotated([points + points[:1]], rng.uniform(0, 2 * math.pi))


def lightning(rng):
    """A lightning bolt drawn as its closed outline; a bolt of single lines is a Z, a 2 or a 4."""
    w, step = rng.uniform(0.18, 0.3), rng.uniform(0.15, 0.3)
    outline = [(0.0, 1.0), (w + 0.25, 1.0), (step + 0.1, 0.55), (step + w + 0.15, 0.55), (0.05, -0.6)]
    outline += [(step - 0.05, 0.35), (step - w - 0.05, 0.35)]
    points = jitter(outline, rng, 0.025)
    return rotated([points + points[:1]], rng.uniform(-0.4, 0.4))


def heart(rng):
    points = []
    for k in range(49):
        t = 2 * math.pi * k / 48
        points.append(
            (
                16 * math.sin(t) ** 3,
                13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t),
            )
        )
    points = [(x * rng.uniform(0.8, 1.2), y) for x, y in jitter(points, rng, 0.12)]
    strokes = [points[:25], points[24:]] if rng.random() < 0.4 else [points]  # two halves, or one line
    return rotated(strokes, rng.uniform(-0.35, 0.35))
