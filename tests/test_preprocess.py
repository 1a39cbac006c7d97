"""The preprocessing (handler/decode.py, ink.py, mnist_form.py) on real drawings: real pen digits rendered as a canvas draws them, and MNIST
digits drawn onto a canvas. Expectations come from how MNIST was built (ink cropped, longer side 20 px,
centre of mass at the centre of 28x28), not from stored outputs."""

import base64
import io
import random

import numpy as np
import pytest
import torchvision
from PIL import Image

from handler.decode import MAX_PIXELS, decode, image_pixels, open_image, payload_to_bytes
from handler.errors import InputError, NoDigitError, TooLargeError
from handler.ink import _median, ink_map, stroke_width
from handler.mnist_form import STRAY_SHARE, preprocess, to_mnist
from tests.models import MNIST_DIR
from train import pendigits

DIGITS = pendigits.held_out(pendigits.load())[:40:4]


def drawn(digit, seed=0, canvas=280, **changes) -> pendigits.Drawing:
    drawing = pendigits.layout(digit, random.Random(seed), canvas)
    return pendigits.Drawing(drawing.label, drawing.strokes, changes.get("brush", drawing.brush))


def moved(drawing, dx, dy, scale=1.0) -> pendigits.Drawing:
    strokes = [[(x * scale + dx, y * scale + dy) for x, y in s] for s in drawing.strokes]
    return pendigits.Drawing(drawing.label, strokes, drawing.brush * scale)


def read(image: Image.Image) -> np.ndarray:
    return preprocess(pendigits.png_bytes(image))


def box_and_centre(digit: np.ndarray):
    rows, cols = np.nonzero(digit > 0.25)
    side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    ys, xs = np.mgrid[:28, :28]
    return side, (digit * ys).sum() / digit.sum(), (digit * xs).sum() / digit.sum()


@pytest.mark.parametrize("digit", DIGITS, ids=lambda d: str(d.label))
def test_crop_scale_and_centre_like_mnist(digit):
    out = read(pendigits.render(drawn(digit)))
    assert out.shape == (28, 28) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    side, cy, cx = box_and_centre(out)
    assert 18 <= side <= 22, f"longer side {side} px, MNIST's is 20"
    # Placed by whole pixels, as MNIST was: the centre of mass is at most half a pixel off the centre.
    assert abs(cy - 13.5) <= 0.5 + 1e-4 and abs(cx - 13.5) <= 0.5 + 1e-4, (cy, cx)


def test_position_and_size_on_the_canvas_do_not_matter():
    for digit in DIGITS:
        base = drawn(digit, seed=3)
        small = moved(base, 0, 0, 0.5)
        elsewhere = moved(small, 120, 90)
        a, b, c = (read(pendigits.render(d)) for d in (base, small, elsewhere))
        assert np.abs(b - c).max() < 1e-6, "the same drawing moved must give the same 28x28"
        # Half the size with the same brush is a bolder digit; strokes within MNIST's range of widths
        # keep theirs (mnist_form.WIDTH_RANGE), so the two differ by that boldness, not more.
        assert np.abs(a - b).mean() < 0.09, "half the size must give nearly the same 28x28"


def test_polarity_and_transparency_give_the_same_image():
    for digit in DIGITS:
        image = pendigits.render(drawn(digit, seed=4))
        black_on_white = read(image)
        white_on_black = read(Image.eval(image, lambda v: 255 - v))
        transparent = read(pendigits.render(drawn(digit, seed=4), transparent=True))
        assert np.abs(black_on_white - white_on_black).max() < 2 / 255
        assert np.abs(black_on_white - transparent).max() < 2 / 255
        coloured = Image.merge(
            "RGB", [Image.eval(image, lambda v: v // 2 + 100)] * 2 + [image]
        )  # blue-ish ink
        assert np.abs(black_on_white - read(coloured)).mean() < 0.03


def test_any_canvas_size():
    digit = DIGITS[0]
    reference = read(pendigits.render(drawn(digit, seed=5)))
    for canvas in (100, 600, 800):  # 800x800: MAX_PIXELS
        out = read(pendigits.render(drawn(digit, seed=5, canvas=canvas), canvas=canvas, supersample=2))
        assert 18 <= box_and_centre(out)[0] <= 22
        assert np.abs(out - reference).mean() < 0.09, canvas  # a bolder digit on a smaller canvas


def test_stroke_width_comes_out_like_mnist_whatever_the_brush():
    mnist = torchvision.datasets.MNIST(MNIST_DIR, train=False, download=True)
    mnist_width = np.median([stroke_width(mnist.data[i].numpy() > 64) for i in range(300)])
    widths = {}
    for brush in (6, 12, 24):
        outs = [read(pendigits.render(drawn(d, seed=6, brush=brush))) for d in DIGITS]
        widths[brush] = np.median([stroke_width(o > 0.25) for o in outs])
    # Raw, a 24 px brush is 4x a 6 px one; after preprocessing all are within 35% of MNIST's width.
    assert all(abs(w - mnist_width) / mnist_width < 0.35 for w in widths.values()), (mnist_width, widths)


def test_an_mnist_digit_drawn_on_a_canvas_comes_back_as_itself():
    """Up to a pixel of shift and some stroke width: resizing the canvas instead gives a median of 0.7."""
    mnist = torchvision.datasets.MNIST(MNIST_DIR, train=False, download=True)
    similarity = []
    for i in range(20):
        original = mnist.data[i].numpy().astype(np.float32) / 255
        canvas = Image.new("L", (280, 280), 0)
        canvas.paste(
            Image.fromarray(mnist.data[i].numpy()).resize((224, 224), Image.Resampling.BICUBIC), (30, 20)
        )
        out = to_mnist(ink_map(canvas))
        shifts = [np.roll(out, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        similarity.append(max(np.corrcoef(s.ravel(), original.ravel())[0, 1] for s in shifts))
    assert np.median(similarity) > 0.88 and min(similarity) > 0.5, np.round(similarity, 2)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (280, 280), 255),  # blank white canvas
        Image.new("L", (280, 280), 0),  # blank black canvas
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),  # unfilled canvas, as toDataURL() gives it
        Image.effect_noise((280, 280), 4).point(lambda v: 240 + v // 16),  # white canvas, faint noise
    ],
    ids=["white", "black", "transparent", "noise"],
)
def test_a_blank_canvas_is_no_digit(image):
    with pytest.raises(NoDigitError, match="no digit drawn"):
        read(image)


@pytest.mark.parametrize("side", [3, 10, 20])
def test_a_speck_is_no_digit(side):
    canvas = Image.new("L", (280, 280), 255)
    canvas.paste(0, (100, 150, 100 + side, 150 + side))
    with pytest.raises(NoDigitError, match="speck"):
        read(canvas)


@pytest.mark.parametrize("brush", [8, 20])
@pytest.mark.parametrize("transparent", [False, True], ids=["white", "transparent"])
def test_a_tap_or_a_tiny_scribble_is_no_digit(brush, transparent):
    """What a touch screen leaves from a tap or a slip: a round dot, or a stroke about a brush width long."""
    for strokes in ([[(140.0, 140.0)]], [[(100.0, 60.0), (100.0 + brush, 60.0 + brush / 2)]]):
        image = pendigits.render(pendigits.Drawing(1, strokes, brush), transparent=transparent)
        with pytest.raises(NoDigitError, match="speck"):
            read(image)


@pytest.mark.parametrize("brush", [8, 20])
@pytest.mark.parametrize("transparent", [False, True], ids=["white", "transparent"])
def test_taps_far_apart_are_no_digit(brush, transparent):
    """Two or three taps spread over the canvas span a digit-sized box, but none of them is a digit."""
    layouts = {
        "side by side": [(60, 140), (220, 140)],
        "one above the other": [(140, 40), (140, 240)],
        "diagonal": [(50, 50), (230, 230)],
        "three": [(40, 200), (140, 60), (240, 200)],
    }
    for name, taps in layouts.items():
        image = pendigits.render(
            pendigits.Drawing(1, [[tap] for tap in taps], brush), transparent=transparent
        )
        with pytest.raises(NoDigitError, match="specks"):
            read(image)
            pytest.fail(f"{name}: taps were read as a digit")


def test_dots_are_no_digit_even_in_the_shape_of_one():
    """Dots in a row span a digit's box but are still only dots: every piece is judged on its own. (The
    densest row leaves 3.6 px between 4 px dots; gaps of under 2 px, one pixel where a 280 px canvas is
    analysed (WORK_SIDE), close up into a line, as they do to the eye.)"""
    for count in (3, 12, 30):
        dots = [[(140.0, 30 + 220 * i / (count - 1))] for i in range(count)]
        image = pendigits.render(pendigits.Drawing(1, dots, 4))
        with pytest.raises(NoDigitError, match="specks"):
            read(image)
            pytest.fail(f"{count} dots were read as a digit")


def test_a_short_one_is_still_a_digit():
    """A '1' is a thin line: long in one direction only, and not a speck even if drawn small."""
    canvas = Image.new("L", (280, 280), 255)
    canvas.paste(0, (140, 110, 148, 170))
    side, _, _ = box_and_centre(read(canvas))
    assert 18 <= side <= 22


def test_base64_mangled_on_the_way_decodes_to_the_same_bytes():
    """toDataURL's base64 is decoded as it is; what forms, mail-style wrapping and URL-safe encoders do
    to it on the way still gives the same bytes."""
    png = pendigits.png_bytes(pendigits.render(drawn(DIGITS[0]))) + bytes(range(256))
    png += b"x" * ((1 - len(png)) % 3)  # a length of 3n+1: base64 ends in "=="
    text = base64.b64encode(png).decode()
    assert {"+", "/", "="} <= set(text)  # every rewrite below changes something
    url = "data:image/png;base64,"
    variants = {
        "as toDataURL gives it": url + text,
        "form encoding's + as space": url + text.replace("+", " "),
        "wrapped at 76 columns": url + "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76)),
        "URL-safe alphabet, no padding": url + base64.urlsafe_b64encode(png).decode().rstrip("="),
        "bare base64": text,
    }
    for name, variant in variants.items():
        assert payload_to_bytes(variant) == png, name
        assert payload_to_bytes(variant.encode()) == png, name
    with pytest.raises(InputError, match="base64"):
        payload_to_bytes(url + text[:-4] + "*&^%")


def with_strokes(drawing: pendigits.Drawing, *strokes) -> pendigits.Drawing:
    return pendigits.Drawing(drawing.label, [*drawing.strokes, *strokes], drawing.brush)


def test_a_stray_tap_away_from_the_digit_changes_nothing():
    """A tap beside, below or diagonally away from the digit would otherwise widen the crop: the digit
    would come out small and off-centre."""
    for digit in DIGITS:
        small = moved(drawn(digit, seed=5), 10, 10, 0.5)  # leaves room right of and below the digit
        left, right, top, bottom = pendigits.extent(small.strokes)
        assert right + 2 * small.brush < 262 and bottom + 2 * small.brush < 262
        clean = read(pendigits.render(small))
        for tap in [(265, (top + bottom) / 2), ((left + right) / 2, 265), (265, 265)]:
            tapped = read(pendigits.render(with_strokes(small, [tap])))
            assert np.abs(tapped - clean).max() < 1e-6, f"tap at {tap} changed the digit"


def test_a_fat_tap_beside_a_small_digit_changes_nothing():
    """With a fat brush a tap holds more than STRAY_SHARE of a small digit's ink: it is still a tap (a
    round dot, no longer than a couple of its widths), and left out of the crop."""
    for digit in DIGITS:
        small = moved(drawn(digit, seed=7, brush=30), 10, 10, 0.4)
        tapped = with_strokes(small, [(262, 262)])
        inked = [np.count_nonzero(ink_map(pendigits.render(d)) > 64) for d in (small, tapped)]
        assert (inked[1] - inked[0]) / inked[1] > STRAY_SHARE, "the tap is too light to test this"
        assert np.abs(read(pendigits.render(tapped)) - read(pendigits.render(small))).max() < 1e-6


def test_a_detached_part_with_real_ink_is_kept():
    """A second stroke cut off from the digit by empty rows but with real ink in it (a bar, a detached
    top of a 5) is part of the drawing: it stays, with the empty band between."""
    for digit in DIGITS:
        small = moved(drawn(digit, seed=6), 10, 10, 0.5)
        left, right, top, bottom = pendigits.extent(small.strokes)
        gap = bottom + 4 * small.brush
        out = read(pendigits.render(with_strokes(small, [(left, gap), (right, gap)])))
        inked_rows = np.flatnonzero(out.max(axis=1) > 0.25)
        assert np.diff(inked_rows).max() > 1, "the bar below the digit was dropped or merged"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "RGB+tRNS"])
def test_every_png_kind_decodes_to_the_pixels_pil_gives(mode):
    """8-bit grey/RGB/RGBA PNGs are decoded by libspng (serving reads their header itself), the rest by
    PIL: the same pixels either way, as a PIL image (open_image) and as an array (decode)."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA")
    image = image.convert("RGB") if mode == "RGB+tRNS" else image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **({"transparency": (0, 0, 0)} if mode == "RGB+tRNS" else {}))
    reference = Image.open(io.BytesIO(buffer.getvalue()))
    reference.load()
    decoded = open_image(buffer.getvalue())
    assert (decoded.format, decoded.mode, decoded.size) == (reference.format, reference.mode, reference.size)
    assert np.array_equal(np.asarray(decoded), np.asarray(reference))
    assert np.array_equal(decode(buffer.getvalue()), image_pixels(reference))


def test_an_animated_png_is_refused_even_in_8_bit_rgba():
    """An APNG's header looks like a plain PNG's; its acTL chunk sends it to PIL, which counts frames."""
    frames = [Image.new("RGBA", (40, 40), (v, v, v, 255)) for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    assert buffer.getvalue()[25] == 6  # RGBA, 8 bits (byte 24): what the fast path takes
    with pytest.raises(InputError, match="animated"):
        decode(buffer.getvalue())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_the_pixel_limit_is_exact_and_refused_before_decoding(fmt):
    """MAX_PIXELS bounds the work (docs/limits.md): an image of exactly that many pixels is read, one more
    row is 413, however small its body."""
    side = int(MAX_PIXELS**0.5)
    assert side * side == MAX_PIXELS
    for size, accepted in (((side, side), True), ((side, side + 1), False)):
        image = pendigits.render(drawn(DIGITS[0], seed=5)).resize(size)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, fmt)
        if accepted:
            assert preprocess(buffer.getvalue()).shape == (28, 28)
        else:
            with pytest.raises(TooLargeError):
                preprocess(buffer.getvalue())


def test_the_background_median_is_numpys():
    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 560, 1119, 1120):
        for values in (rng.integers(0, 256, size, dtype=np.uint8), np.full(size, 255, np.uint8)):
            assert _median(values) == int(np.median(values)), (size, values[:8])
