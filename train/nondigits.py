"""Drawings that are not digits, for the model's 11th output ("not a digit", label 10).

Two sources, both drawn like the pen digits (train/pendigits.layout: a round brush of 8-20 px, a height
of 35-85% of the 280x280 canvas, a random place) and read back by handler/mnist_form.py, the serving
code, so the model sees negatives exactly as it would be fed them:
- glyphs of the Hershey stroke fonts (Debian hershey-fonts-data, /usr/share/hershey-fonts/*.jhf, parsed
  here: each line is a glyph, ASCII 32 upwards; coordinates are letters offset by ord("R"), " R" lifts
  the pen), less every glyph that is or could pass for a digit (EXCLUDED, the one list of them);
- shapes and scribbles generated here (SHAPES).

Whole families are held out, fixed before any tuning, to measure how the model meets kinds of
non-digit it never saw: the Cyrillic fonts, the script font scriptc and the generated hearts
(HELD_OUT_FONTS, HELD_OUT_SHAPES). Training never sees them; metrics.json and bench/canvas_accuracy.py
--nondigits report how many of them are answered "not a digit".
"""

import math
import os
import random
import sys
from functools import cache as memoised
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from handler.answers import NOT_A_DIGIT
from handler.errors import InputError
from handler.ink import ink_map
from handler.mnist_form import to_mnist
from train import cache, pendigits

FONT_DIR = Path(os.environ.get("HERSHEY_FONTS", "/usr/share/hershey-fonts"))
RENDER_SEED = 26  # renders do not depend on the training seed, so all seeds share one cache

# ---- what is trained on and what is held out (fixed before tuning) ---------------------------------
TRAIN_FONTS = {
    "latin": [
        "futural",
        "futuram",
        "rowmans",
        "rowmand",
        "rowmant",
        "timesr",
        "timesrb",
        "timesi",
        "timesib",
    ],
    "gothic": ["gothgbt", "gothitt"],
    "script": ["scripts", "cursive"],
    "greek": ["greek", "greekc", "greeks", "timesg"],
    "markers": ["markers"],
}
HELD_OUT_FONTS = {"cyrillic": ["cyrillic", "cyrilc_1"], "scriptc": ["scriptc"]}
TRAIN_SHAPES = ["polygon", "star", "arrow", "grid", "scribble", "zigzag", "smiley"]
# Closed and curved outlines a user might draw, chosen on what people draw, not on the held-out hearts.
TRAIN_SHAPES += ["leaf", "crescent", "cloud", "spiral", "blob", "lightning"]
HELD_OUT_SHAPES = ["heart"]
# Not used (their glyphs were not checked one by one): astrology, mathlow, mathupp, meteorology, music,
# symbolic (many of its glyphs are single lines and arcs: 1s and 7s), japanese.

# ---- EXCLUDED: every glyph that is, or a person would accept as, a digit ---------------------------
# By the glyph's slot (its ASCII character). In every font: the digits, punctuation that is a stroke,
# a dot or a bracket (| ! / \ ( ) [ ] { } . , : ; ' " ` - _: a 1, a 0 once scaled up, or a speck), the
# space, and the Latin letters that pass for digits: O o Q D (0), I l i j J T (1, 7), S s $ (5),
# Z z (2), B (8), b G (6), g q (9).
EXCLUDED_EVERYWHERE = set("0123456789") | set(" |!/\\()[]{}.,:;'\"`-_") | set("OoQDIlijJTSs$ZzBbGgq")
# Per font, the other alphabets' look-alikes in the slots they occupy (checked on contact sheets).
EXCLUDED_IN = {
    # Greek: Β (8), Γ (7), Ι ι (1), Ο ο Θ (0), Τ τ (7), ° (a 0 once scaled up), Ω (0), Ζ ζ ξ (2, 3),
    # β (8), δ σ (6), ε (3 mirrored), ϑ (9), ρ (9 mirrored), the glyph in slot DEL.
    **dict.fromkeys(["greek", "greekc", "greeks", "timesg"], set("BGIJOQTVWZbdeioqrstxz\x7f")),
    # Cyrillic (cyrillic.jhf's order): Э э (3), Ю ю (10), В в (8), Ъ ъ Ь ь Ы ы б (6), Г г (7),
    # Ч ч (4), З з (3), О о (0), Т т (7).
    "cyrillic": set("CUV]_ctuv~&$bgjJGTzZOo"),
    # Cyrillic (cyrilc_1.jhf's alphabetical order): Б б (6), В в (8), Г г (7), З з (3), О о (0),
    # Т т (7), Ч ч (4), ° in slot DEL.
    "cyrilc_1": set("BbCcDdHhOoSsXx\x7f"),
    # Script capitals: E (a mirrored 3), L (a looped 2).
    **dict.fromkeys(["scripts", "cursive", "scriptc"], set("EL")),
    # Markers: circle, filled dot, square, filled square, diamond (all pass for a 0).
    "markers": set("AaBbDdJjKk"),
}
# -----------------------------------------------------------------------------------------------------


def excluded(font: str, char: str) -> bool:
    return char in EXCLUDED_EVERYWHERE or char in EXCLUDED_IN.get(font, ())


def parse_jhf(text: str) -> list[list[list[tuple[int, int]]]]:
    """Glyphs of a .jhf file in order (ASCII 32 first), each a list of strokes of (x, y), y down."""
    glyphs = []
    for line in text.splitlines():
        if len(line) < 10:
            continue
        pairs, strokes = line[10:], [[]]
        for i in range(0, len(pairs) - 1, 2):
            if pairs[i : i + 2] == " R":
                strokes.append([])
            else:
                strokes[-1].append((ord(pairs[i]) - 82, ord(pairs[i + 1]) - 82))
        glyphs.append([s for s in strokes if s])
    return glyphs


@memoised
def glyphs(font: str) -> list[tuple[str, tuple]]:
    """(character, strokes with y up as the pen-digit file has them) of a font's usable glyphs."""
    parsed = parse_jhf((FONT_DIR / f"{font}.jhf").read_text(encoding="latin-1"))
    usable = []
    for index, strokes in enumerate(parsed):
        char = chr(32 + index)
        if strokes and not excluded(font, char) and _extent_of(strokes) >= 4:
            usable.append((char, tuple(tuple((x, -y) for x, y in s) for s in strokes)))
    return usable


def _extent_of(strokes) -> int:
    xs = [x for s in strokes for x, _ in s]
    ys = [y for s in strokes for _, y in s]
    return max(max(xs) - min(xs), max(ys) - min(ys))


# ---- generated shapes (y up, any scale: layout fits them to the canvas) ------------------------------


def _rotated(strokes, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [[(x * c - y * s, x * s + y * c) for x, y in stroke] for stroke in strokes]


def _jitter(points, rng, amount):
    return [(x + rng.gauss(0, amount), y + rng.gauss(0, amount)) for x, y in points]


def _smooth(points, steps=8):
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


def _ring(n, rng, radius=1.0, start=0.0):
    return [
        (radius * math.cos(start + 2 * math.pi * k / n), radius * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]


def polygon(rng):
    """A triangle or a house (a square with a roof); squares, hexagons and circles pass for 0s."""
    if rng.random() < 0.7:
        points = _jitter(_ring(3, rng, start=rng.uniform(0, 2 * math.pi)), rng, 0.08)
    else:
        roof = rng.uniform(0.4, 0.9)
        points = _rotated(
            [_jitter([(0, 0), (1, 0), (1, 1), (0.5, 1 + roof), (0, 1)], rng, 0.03)], rng.uniform(-0.3, 0.3)
        )[0]
    return [points + points[:1]]


def star(rng):
    n, inner, start = rng.randint(5, 8), rng.uniform(0.35, 0.55), rng.uniform(0, 2 * math.pi)
    outer = _ring(n, rng, start=start)
    points = [p for pair in zip(outer, _ring(n, rng, inner, start + math.pi / n), strict=True) for p in pair]
    if n in (5, 7) and rng.random() < 0.5:  # in one line, as people draw a pentagram
        points = [outer[(k * (2 if n == 5 else 3)) % n] for k in range(n)]
    return [_jitter(points + points[:1], rng, 0.04)]


def arrow(rng):
    length, head = 1.0, rng.uniform(0.25, 0.4)
    spread = rng.uniform(0.4, 0.8)
    shaft = [(0.0, 0.0), (length, 0.0)]
    wings = [(length - head * math.cos(spread), head * math.sin(spread)), (length, 0.0)]
    wings.append((length - head * math.cos(spread), -head * math.sin(spread)))
    strokes = [shaft, wings] if rng.random() < 0.5 else [shaft + wings[:1], [wings[1], wings[2]]]
    return _rotated(strokes, rng.uniform(0, 2 * math.pi))


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
    return _rotated([_jitter(line, rng, 0.02) for line in lines], rng.uniform(0, math.pi))


def scribble(rng):
    """One long smooth curve through 8-14 random points, or 2-4 shorter ones."""
    if rng.random() < 0.6:
        return [_smooth([(rng.random(), rng.random()) for _ in range(rng.randint(8, 14))])]
    return [
        _smooth([(rng.random(), rng.random()) for _ in range(rng.randint(3, 6))])
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
    return _rotated([_jitter(points, rng, 0.01)], rng.uniform(0, math.pi))


def smiley(rng):
    face = _jitter(_ring(32, rng), rng, 0.015)
    eyes = [[(x, 0.35), (x, 0.35 + rng.uniform(0.02, 0.12))] for x in (-0.35, 0.35)]
    arc = np.linspace(math.pi + 0.5, 2 * math.pi - 0.5, 12)
    if rng.random() < 0.7:  # a smile, or a frown
        mouth = [(0.5 * math.cos(a), -0.15 + 0.35 * math.sin(a)) for a in arc]
    else:
        mouth = [(0.5 * math.cos(a), -0.75 - 0.3 * math.sin(a)) for a in arc]
    return [face + face[:1], *eyes, mouth]


# Closed and curved shapes. Each is kept away from a digit's reading: nothing that is one plain loop
# (a 0), a loop with a tail (a 6 or a 9), two loops (an 8) or one or two lines (a 1 or a 7).


def leaf(rng):
    """An almond outline with its midrib and stem: the outline alone would pass for a 0, so never alone."""
    width, bend = rng.uniform(0.25, 0.45), rng.uniform(-0.15, 0.15)
    t = np.linspace(0, 1, 17)
    upper = [(x, bend * math.sin(math.pi * x) + width * math.sin(math.pi * x)) for x in t]
    lower = [(x, bend * math.sin(math.pi * x) - width * math.sin(math.pi * x)) for x in t[::-1]]
    outline = _jitter(upper + lower[1:], rng, 0.015)
    midrib = [(-rng.uniform(0.15, 0.3), 0.0), *[(x, bend * math.sin(math.pi * x)) for x in t[:-3]]]
    return _rotated([outline, _jitter(midrib, rng, 0.01)], rng.uniform(0, 2 * math.pi))


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
    points = _jitter(outer + inner, rng, 0.015)
    return _rotated([points + points[:1]], rng.uniform(0, 2 * math.pi))


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
    points = _jitter(out, rng, 0.012)
    return _rotated([points + points[:1]], rng.uniform(0, 2 * math.pi))


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
    return _rotated([_jitter(points, rng, 0.008)], rng.uniform(0, 2 * math.pi))


def blob(rng):
    """A smooth closed outline of three or more lobes (radii alternately far and near): one lobe is a 0,
    two an 8 or a peanut-shaped 0."""
    lobes = rng.randint(3, 5)
    control = []
    for k in range(2 * lobes):
        r = rng.uniform(0.8, 1.0) if k % 2 == 0 else rng.uniform(0.35, 0.6)
        a = 2 * math.pi * (k + rng.uniform(-0.2, 0.2)) / (2 * lobes)
        control.append((r * math.cos(a), r * math.sin(a)))
    points = _smooth(control + control[:3])[8:-8]  # a closed curve: wrap the control points round
    return _rotated([points + points[:1]], rng.uniform(0, 2 * math.pi))


def lightning(rng):
    """A lightning bolt drawn as its closed outline; a bolt of single lines is a Z, a 2 or a 4."""
    w, step = rng.uniform(0.18, 0.3), rng.uniform(0.15, 0.3)
    outline = [(0.0, 1.0), (w + 0.25, 1.0), (step + 0.1, 0.55), (step + w + 0.15, 0.55), (0.05, -0.6)]
    outline += [(step - 0.05, 0.35), (step - w - 0.05, 0.35)]
    points = _jitter(outline, rng, 0.025)
    return _rotated([points + points[:1]], rng.uniform(-0.4, 0.4))


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
    points = [(x * rng.uniform(0.8, 1.2), y) for x, y in _jitter(points, rng, 0.12)]
    strokes = [points[:25], points[24:]] if rng.random() < 0.4 else [points]  # two halves, or one line
    return _rotated(strokes, rng.uniform(-0.35, 0.35))


_KINDS = (
    polygon,
    star,
    arrow,
    grid,
    scribble,
    zigzag,
    smiley,
    leaf,
    crescent,
    cloud,
    spiral,
    blob,
    lightning,
)
SHAPES = {f.__name__: f for f in (*_KINDS, heart)}


# ---- rendering -----------------------------------------------------------------------------------


def drawings(
    fonts: list[str], shapes: list[str], copies: int, seed: int
) -> list[tuple[str, pendigits.Drawing]]:
    """(family member, drawing laid out on the canvas): every usable glyph `copies` times, and
    100 x copies of each shape kind; each with its own random brush, size and place."""
    rng = random.Random(seed)
    out = []
    for font in fonts:
        for _, strokes in glyphs(font):
            for _ in range(copies):
                out.append((font, _laid_out(strokes, rng)))
    for kind in shapes:
        for _ in range(100 * copies):
            strokes = tuple(tuple(stroke) for stroke in SHAPES[kind](rng))
            out.append((kind, _laid_out(strokes, rng)))
    return out


def _laid_out(strokes, rng):
    return pendigits.layout(pendigits.PenDigit(NOT_A_DIGIT, 0, strokes), rng)


def _to_28x28(drawing):
    try:
        return (to_mnist(ink_map(pendigits.render(drawing, supersample=2))) * 255).round().astype(
            np.uint8
        ), True
    except InputError:  # too little ink left to be anything: answered "no digit drawn", not trained on
        return np.zeros((28, 28), np.uint8), False


def _rendered(name, fonts, shapes, copies, seed):
    def compute():
        laid = drawings(fonts, shapes, copies, seed)
        with Pool(os.cpu_count()) as pool:
            out = pool.map(_to_28x28, [d for _, d in laid], chunksize=128)
        ok = np.array([o[1] for o in out])
        return {
            "images": np.stack([o[0] for o in out])[ok],
            "families": np.array([family for family, _ in laid])[ok],
        }

    key = cache.key(sys.modules[__name__], pendigits, fonts=fonts, shapes=shapes, copies=copies, seed=seed)
    return cache.cached(name, key, compute)


def _family_of(member: str) -> str:
    for families in (TRAIN_FONTS, HELD_OUT_FONTS):
        for family, fonts in families.items():
            if member in fonts:
                return family
    return member  # a shape kind is its own family


def nondigit_training_set(copies: int):
    """(images uint8 N x 28 x 28, labels all NOT_A_DIGIT) from the training families, or None."""
    if copies <= 0:
        return None
    if not FONT_DIR.exists():
        sys.exit(
            f"error: no Hershey fonts in {FONT_DIR} (apt-get install hershey-fonts-data, or HERSHEY_FONTS=dir); "
            "NONDIGIT_COPIES=0 trains a model of ten outputs that never says 'not a digit'"
        )
    fonts = [f for family in TRAIN_FONTS.values() for f in family]
    arrays = _rendered("nondigit-train", fonts, TRAIN_SHAPES, copies, RENDER_SEED)
    images = torch.from_numpy(arrays["images"])
    return images, torch.full((len(images),), NOT_A_DIGIT, dtype=torch.long)


def nondigit_held_out_sets(copies: int = 4) -> dict[str, torch.Tensor]:
    """Per held-out family, its rendered drawings (uint8 N x 28 x 28): only ever measured on."""
    if not FONT_DIR.exists():
        return {}
    fonts = [f for family in HELD_OUT_FONTS.values() for f in family]
    arrays = _rendered("nondigit-held-out", fonts, HELD_OUT_SHAPES, copies, RENDER_SEED + 1)
    families = np.array([_family_of(m) for m in arrays["families"]])
    return {f: torch.from_numpy(arrays["images"][families == f]) for f in sorted(set(families))}


def held_out_drawings(copies: int = 4) -> list[tuple[str, pendigits.Drawing]]:
    """The held-out families' drawings before rendering (bench/canvas_accuracy.py sends them)."""
    fonts = [f for family in HELD_OUT_FONTS.values() for f in family]
    return [(_family_of(m), d) for m, d in drawings(fonts, HELD_OUT_SHAPES, copies, RENDER_SEED + 1)]


def letter(char: str, font: str = "futural", seed: int = 0) -> pendigits.Drawing:
    """One usable glyph laid out on the canvas like a person's drawing (the tests draw letters so)."""
    strokes = dict(glyphs(font))[char]
    return _laid_out(strokes, random.Random(seed))
