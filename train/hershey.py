"""The Hershey stroke fonts (Debian hershey-fonts-data, /usr/share/hershey-fonts/*.jhf) as strokes, less
every glyph that is or could pass for a digit: one source of train/nondigits.py's drawings.

A .jhf file has a glyph a line, ASCII 32 upwards; past the line's first ten characters, coordinates are
pairs of letters offset by ord("R"), and " R" lifts the pen.
"""

import os
from functools import cache as memoised
from pathlib import Path

DEFAULT_FONT_DIR = Path("/usr/share/hershey-fonts")  # training's HERSHEY_FONTS knob (train/train.py)
# Where the tests, benchmarks and `make evaluate` find the fonts; training is handed its knob instead.
FONT_DIR = Path(os.environ.get("HERSHEY_FONTS", DEFAULT_FONT_DIR))

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
def glyphs(font: str, font_dir: Path = FONT_DIR) -> list[tuple[str, tuple]]:
    """(character, strokes with y up as the pen-digit file has them) of a font's usable glyphs."""
    parsed = parse_jhf((Path(font_dir) / f"{font}.jhf").read_text(encoding="latin-1"))
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
