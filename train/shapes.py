"""Shapes and scribbles that are not digits, generated: one source of train/nondigits.py's drawings.

Each kind is a function of a random.Random giving strokes of (x, y), y up, at any scale (pendigits.layout
fits them to the canvas): lines, polygons and scribbles here, the closed and curved outlines in
train/outlines.py; train/nondigits.py SHAPES names them all. Below, the helpers both modules draw with.
"""

import math

import numpy as np


def rotated(strokes, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [[(x * c - y * s, x * s + y * c) for x, y in stroke] for stroke in strokes]


def jitter(points, rng, amount):
    return [(x + rng.gauss(0, amount), y + rng.gauss(0, amount)) for x, y in points]


def smooth(points, steps=8):
    """A Catmull-Rom curve through the points."""
    p = [points[0], *points, points[-1]]
    out = []
    for i in range(1, len(p) - 2):
        for t in (k / steps for k in range(steps)):
            out.append(
                tuple(
                    0.5
                    * (
                        2 * p[i][d]
                        + (-p[i - 1][d] + p[i + 1][d]) * t
                        + (2 * p[i - 1][d] - 5 * p[i][d] + 4 * p[i + 1][d] - p[i + 2][d]) * t * t
                        + (-p[i - 1][d] + 3 * p[i][d] - 3 * p[i + 1][d] + p[i + 2][d]) * t**3
                    )
                    for d in (0, 1)
                )
            )
    return out + [points[-1]]


def ring(n, rng, radius=1.0, start=0.0):
    return [
        (radius * math.cos(start + 2 * math.pi * k / n), radius * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]


def polygon(rng):
    """A triangle or a house (a square with a roof); squares, hexagons and circles pass for 0s."""
    if rng.random() < 0.7:
        points = jitter(ring(3, rng, start=rng.uniform(0, 2 * math.pi)), rng, 0.08)
    else:
        roof = rng.uniform(0.4, 0.9)
        points = rotated(
            [jitter([(0, 0), (1, 0), (1, 1), (0.5, 1 + roof), (0, 1)], rng, 0.03)], rng.uniform(-0.3, 0.3)
        )[0]
    return [points + points[:1]]


def star(rng):
    n, inner, start = rng.randint(5, 8), rng.uniform(0.35, 0.55), rng.uniform(0, 2 * math.pi)
    outer = ring(n, rng, start=start)
    points = [p for pair in zip(outer, ring(n, rng, inner, start + math.pi / n), strict=True) for p in pair]
    if n in (5, 7) and rng.random() < 0.5:  # in one line, as people draw a pentagram
        points = [outer[(k * (2 if n == 5 else 3)) % n] for k in range(n)]
    return [jitter(points + points[:1], rng, 0.04)]


def arrow(rng):
    length, head = 1.0, rng.uniform(0.25, 0.4)
    spread = rng.uniform(0.4, 0.8)
    shaft = [(0.0, 0.0), (length, 0.0)]
    wings = [(length - head * math.cos(spread), head * math.sin(spread)), (length, 0.0)]
    wings.append((length - head * math.cos(spread), -head * math.sin(spread)))
    strokes = [shaft, wings] if rng.random() < 0.5 else [shaft + wings[:1], [wings[1], wings[2]]]
    return rotated(strokes, rng.uniform(0, 2 * math.pi))


def grid(rng):
    """A hash sign, a noughts-and-crosses grid or hatching: three or more lines, never one (a 1)."""
    kind = rng.choice(["hash", "hatch", "crosshatch"])
    lines = []
    if kind == "hash":
        for k in (1, 2):
            lines += [
                [(k / 3, 0), (k / 3 + rng.uniform(-0.1, 0.1), 1)],
                [(0, k / 3), (1, k / 3 + rng.uniform(-0.1, 0.1))],
            ]
    else:
        n = rng.randint(3, 6)
        lines = [[(k / (n - 1), 0), (k / (n - 1) + rng.uniform(-0.05, 0.05), 1)] for k in range(n)]
        if kind == "crosshatch":
            lines += [[(0, k / (n - 1)), (1, k / (n - 1))] for k in range(n)]
    return rotated([jitter(line, rng, 0.02) for line in lines], rng.uniform(0, math.pi))


def scribble(rng):
    """One long smooth curve through 8-14 random points, or 2-4 shorter ones."""
    if rng.random() < 0.6:
        return [smooth([(rng.random(), rng.random()) for _ in range(rng.randint(8, 14))])]
    return [
        smooth([(rng.random(), rng.random()) for _ in range(rng.randint(3, 6))])
        for _ in range(rng.randint(2, 4))
    ]


def zigzag(rng):
    """A zigzag of 4-8 sides or a wave of 2-4 periods (fewer would be a Z, a 2 or a tilde)."""
    if rng.random() < 0.5:
        n = rng.randint(5, 9)
        points = [(k / (n - 1), (k % 2) * rng.uniform(0.3, 0.6)) for k in range(n)]
    else:
        periods, height = rng.randint(2, 4), rng.uniform(0.1, 0.3)
        points = [(t / 60, height * math.sin(2 * math.pi * periods * t / 60)) for t in range(61)]
    return rotated([jitter(points, rng, 0.01)], rng.uniform(0, math.pi))


def smiley(rng):
    face = jitter(ring(32, rng), rng, 0.015)
    eyes = [[(x, 0.35), (x, 0.35 + rng.uniform(0.02, 0.12))] for x in (-0.35, 0.35)]
    arc = np.linspace(math.pi + 0.5, 2 * math.pi - 0.5, 12)
    if rng.random() < 0.7:  # a smile, or a frown
        mouth = [(0.5 * math.cos(a), -0.15 + 0.35 * math.sin(a)) for a in arc]
    else:
        mouth = [(0.5 * math.cos(a), -0.75 - 0.3 * math.sin(a)) for a in arc]
    return [face + face[:1], *eyes, mouth]
