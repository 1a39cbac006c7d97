"""Train a digit CNN on MNIST and export it for TorchServe.

    python -m train.train            # or: make train [ARCH=lenet] [SEED=1] ...
    ARCH=lenet EPOCHS=1 python -m train.train        # smoke run for tests: ~15 s, ~98%
    MAX_STEPS=200 python -m train.train              # or cap the steps (the schedule fits itself to them)
    FEEDBACK_DB=data/feedback.sqlite3 python -m train.train   # plus the page's feedback, less its hold-out
    CONFIG_FROM=build/convnet/metrics.json python -m train.train  # that run's recipe again (build/convnet-rerun)

Configuration comes from the environment (or a metrics.json's "config"); every knob and its default is
right below, and metrics.json records them all. Train what we
serve: every image, MNIST's included, is drawn on a canvas and read back by handler/mnist_form.py
(train/mnist_canvas.py, train/pen_data.py; cached in build/cache after the first run). The validation
split is carved from the 60k training images (seeded), picks the best checkpoint and fits the
temperature baked into the export (train/calibration.py); the test set is looked at once, at the end,
both as MNIST's own 28x28 images and drawn on canvases. Writes OUT_DIR/model.pt (TorchScript),
metrics.json and curves.png.
"""

import contextlib
import copy
import io
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from handler.answers import NOT_A_DIGIT, not_a_digit_rows
from model import build_model, count_flops
from train import cache, hershey, pen_download, pendigits, piece_reader, presentations, shipped
from train.augment import augment
from train.calibration import Temperature, expected_calibration_error, fit_temperature
from train.feedback_data import feedback_training_set, masked
from train.mnist_canvas import through_pipeline
from train.nondigits import nondigit_held_out_sets, nondigit_training_set
from train.number_pieces import number_piece_set
from train.pen_data import pen_held_out_set, pen_training_set
from train.rejection import (
    NotADigitShift,
    RejectionHead,
    choose_threshold,
    digit_probabilities,
    head_loss,
    scores,
)

# ---- configuration: every knob of a run, env var overrides ------------------------------------------
# CONFIG_FROM=build/x/metrics.json re-runs the recipe written there ("config"); env vars still win over it.
_recipe = json.load(open(os.environ["CONFIG_FROM"]))["config"] if os.environ.get("CONFIG_FROM") else {}


def knob(name, default):
    """$name if set, else the recipe's value (CONFIG_FROM), else default; typed as the default is."""
    return type(default)(os.environ.get(name, _recipe.get(name, default)))


ARCH = knob("ARCH", "convnet")
MNIST_DIR = knob("MNIST_DIR", "data")
SEED = knob("SEED", 0)
EPOCHS = knob("EPOCHS", 8.5)  # fractional is fine: EPOCHS=0.2 for a smoke run
MAX_STEPS = knob("MAX_STEPS", 0)  # > 0: stop after this many steps (smoke runs)
BATCH_SIZE = knob("BATCH_SIZE", 128)
LR = knob("LR", 0.1)  # peak of the one-cycle schedule (SGD, Nesterov)
WEIGHT_DECAY = knob("WEIGHT_DECAY", 5e-4)
LABEL_SMOOTHING = knob("LABEL_SMOOTHING", 0.1)
EMA_DECAY = knob("EMA_DECAY", 0.999)  # evaluate and export the weights' moving average
EVAL_EVERY = knob("EVAL_EVERY", 1000)  # steps; also at the end of every epoch
VAL_SIZE = knob("VAL_SIZE", 5000)
# > 0: train on this many MNIST images only (the tests' trainings: fewer to render on a cold cache).
MNIST_SUBSET = knob("MNIST_SUBSET", 0)
ELASTIC = knob("ELASTIC", 0.06)  # std of the elastic displacement field, of the half-width: ~0.8 px
# Pen digits (train/pen_data.py): the file (default: the team's shared copy, else data/, downloaded there),
# renders per trainable digit (0: MNIST alone).
PEN_DIGITS = knob("PEN_DIGITS", str(pendigits.PATH))
PEN_DIGITS_URL = knob("PEN_DIGITS_URL", pen_download.URL)  # where data/'s copy is downloaded from
PEN_COPIES = knob("PEN_COPIES", 4)
# TUNE=1: pen writers 17-20 are held out of training and reported as pen_tune (train/pendigits.py).
TUNE = knob("TUNE", 0)
# The page's feedback (train/feedback_data.py): a SQLite path or database URL, "" for none; each training
# drawing FEEDBACK_COPIES times (16, measured: docs/lifecycle.md, "How much corrections teach"), at most FEEDBACK_IMAGES feedback images
# per epoch (+27% on MNIST + pen digits) until there are more drawings than that, each then once.
FEEDBACK_DB = knob("FEEDBACK_DB", "")
FEEDBACK_COPIES = knob("FEEDBACK_COPIES", 16)
FEEDBACK_IMAGES = knob("FEEDBACK_IMAGES", 20_000)
# Mixed precision for the training passes (evaluation and export stay float32): "auto" is float16 on CUDA,
# bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX: 1.5x faster steps here), off elsewhere.
AMP = knob("AMP", "auto")  # auto | bf16 | fp16 | off
THREADS = knob("THREADS", 0)  # CPU threads for training; 0: one per core
# "Not a digit" (docs/not-a-digit.md): each usable glyph of the training fonts drawn NONDIGIT_COPIES times
# and 100 x NONDIGIT_COPIES of each generated shape kind, as an 11th class; 0: ten classes, no rejection.
NONDIGIT_COPIES = knob("NONDIGIT_COPIES", 8)
HERSHEY_FONTS = knob("HERSHEY_FONTS", str(hershey.DEFAULT_FONT_DIR))  # the stroke fonts (train/hershey.py)
# Reading numbers (train/number_pieces.py): the pieces POST /read cuts out of this many numbers built from
# the training writers' digits, each labelled a digit or "not a digit"; 0: none (the default). 4,000
# (~163,000 pieces, 64% of the images, 14 of training's 16 minutes here) took touching numbers sent as a
# picture alone from 28% to 55-61% exact through the stack, and spread pen digits' accuracy wider
# (97.5-98.8%). Since the page sends its strokes, which part touching digits by themselves (86%), the
# default trains none: the digit reader and training time come back; picture-only touching numbers pay
# (docs/reading.md, "Training for it").
NUMBERS = knob("NUMBERS", 0)
# /read's piece reader (train/piece_reader.py): a small network trained on the pieces of this many numbers
# and on the pen digits drawn alone, after the digit reader, saved beside it as pieces.pt; 0: none. Its 3
# epochs over ~176,000 images take about a minute here, the pieces' first rendering two more (cached after).
# On writers 17-20 (TUNE=1 model, picture alone) touching numbers read 40.3 -> 55.7% exact, close 91.0 ->
# 92.7%, apart 92.0 -> 92.7% (docs/reading.md). Trained only where pen digits are (the numbers are built
# from them).
PIECES = knob("PIECES", piece_reader.COUNT)
# > 0: this many of the training MNIST images also presented upscaled whole (train/presentations.py). Without
# them that presentation asked the loosest "not a digit" threshold and non-digits paid for it: hearts 83%
# refused, script capitals 92.6% (TUNE=1); with 10,000, 100% and 97.7%, pen writers 17-20 98.50% against
# 98.60% (one digit) (docs/training.md).
UPSCALED = knob("UPSCALED", 10_000)
# How "not a digit" is learnt (train/rejection.py): "head", a yes/no score of its own beside the ten
# digits' softmax; "class", an 11th class competing with the digits in one softmax (before 12-06, so a
# CONFIG_FROM recipe that does not name it was trained so).
REJECTION = knob("REJECTION", "class" if _recipe and "REJECTION" not in _recipe else "head")
# At most this share of validation real digits may be answered "not a digit" (the threshold's choice).
REJECT_TARGET = knob("REJECT_TARGET", 0.003)
CACHE_DIR = knob("CACHE_DIR", str(cache.DEFAULT_DIR))  # rendered training images (train/cache.py)
# Where the model goes: never the recipe's own directory, so a re-run does not overwrite what it re-runs.
OUT_DIR = os.environ.get("OUT_DIR") or (
    os.path.dirname(os.environ["CONFIG_FROM"]) + "-rerun" if _recipe else f"build/{ARCH}"
)
# What metrics.json records as "config": every knob above but OUT_DIR, with a database URL's password masked.
CONFIG = {
    k: v for k, v in globals().items() if k.isupper() and isinstance(v, int | float | str) and k != "OUT_DIR"
}
CONFIG["FEEDBACK_DB"] = masked(FEEDBACK_DB)
# -----------------------------------------------------------------------------------------------------

# TorchScript is deprecated upstream (torch 2.14) and says so on script/save; we use it knowingly.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.(script|trace|save|load)` is deprecated", category=FutureWarning
)


def load_mnist(device):
    """MNIST and pen digits as uint8 tensors in memory (no DataLoader, no per-sample transforms): fit,
    val and test as the serving preprocessing gives them, and MNIST's own 28x28 test images."""
    train, test = mnist(train=True), mnist(train=False)
    order = torch.randperm(len(train.data), generator=torch.Generator().manual_seed(SEED))
    val, fit = order[:VAL_SIZE], order[VAL_SIZE:]
    if MNIST_SUBSET > 0:
        fit = fit[:MNIST_SUBSET]
    # One render per image, cached: all 60k (shared by every seed), or only those a subset uses.
    rendered = torch.arange(len(train.data)) if MNIST_SUBSET <= 0 else torch.cat([val, fit]).sort().values
    print(
        f"MNIST through the serving preprocessing: {len(rendered)} training and {len(test.data)} test images"
    )
    images, ok = through_pipeline(train.data.numpy(), rendered.numpy(), "train", Path(CACHE_DIR))
    x = torch.zeros_like(train.data)
    x[rendered] = torch.from_numpy(images)
    usable = torch.zeros(len(x), dtype=torch.bool)
    usable[rendered] = torch.from_numpy(ok)
    # An image the preprocessing refuses (a digit of specks, 2 in 10,000) teaches nothing: left out.
    fit, val = fit[usable[fit]], val[usable[val]]
    y = train.targets
    fit_x, fit_y = x[fit], y[fit]
    pen = pen_training_set(  # validation and test stay MNIST
        Path(PEN_DIGITS),
        PEN_COPIES,
        TUNE == 1,
        may_download=Path(PEN_DIGITS) == pendigits.DATA_PATH,
        cache_dir=Path(CACHE_DIR),
        url=PEN_DIGITS_URL,
    )
    if pen is not None:
        fit_x, fit_y = torch.cat([fit_x, pen[0]]), torch.cat([fit_y, pen[1]])
        writers = "1-16" if TUNE == 1 else "1-20"
        print(f"training on {len(fit)} MNIST + {len(pen[0])} rendered pen digits (writers {writers})")
    if UPSCALED > 0:
        chosen = fit[:UPSCALED].numpy()
        up, up_ok = presentations.mnist_presented(
            "mnist_upscaled", train.data.numpy(), chosen, "train", Path(CACHE_DIR)
        )
        keep = torch.from_numpy(up_ok)
        fit_x, fit_y = torch.cat([fit_x, torch.from_numpy(up)[keep]]), torch.cat([fit_y, y[chosen][keep]])
        print(f"plus {int(keep.sum())} MNIST training digits upscaled whole")
    negatives = nondigit_training_set(  # label 10 (train/nondigits.py)
        NONDIGIT_COPIES, Path(HERSHEY_FONTS), Path(CACHE_DIR)
    )
    if negatives is not None:
        fit_x, fit_y = torch.cat([fit_x, negatives[0]]), torch.cat([fit_y, negatives[1]])
        print(f"plus {len(negatives[0])} drawings that are not digits (label 10)")
    pieces = (  # train/number_pieces.py
        number_piece_set(Path(PEN_DIGITS), NUMBERS, TUNE == 1, Path(CACHE_DIR)) if pen is not None else None
    )
    if pieces is not None:
        fit_x, fit_y = torch.cat([fit_x, pieces[0]]), torch.cat([fit_y, pieces[1]])
        print(f"plus {len(pieces[0])} pieces of {NUMBERS} numbers, as /read cuts them")
    # FEEDBACK_DB's drawings, less their hold-out (train/feedback_data.py): label 10 where a person
    # confirmed "not a digit", the digit where one corrected a rejection.
    feedback = feedback_training_set(FEEDBACK_DB, FEEDBACK_COPIES, FEEDBACK_IMAGES)
    if feedback is not None:
        fit_x, fit_y = torch.cat([fit_x, feedback[0]]), torch.cat([fit_y, feedback[1]])
    test_images, test_ok = through_pipeline(
        test.data.numpy(), torch.arange(len(test.data)).numpy(), "test", Path(CACHE_DIR)
    )
    # A test digit refused as 'no digit drawn' counts as wrong: its label becomes -1, never predicted.
    test_canvas_y = torch.where(torch.from_numpy(test_ok), test.targets, -1)
    pen_val = pen_held_out_set(  # training writers' digits kept out of training
        Path(PEN_DIGITS), lambda digits: pendigits.validation(digits, TUNE == 1), Path(CACHE_DIR)
    )
    return {
        "fit": (fit_x.to(device), fit_y.to(device)),
        "pen_val": None if pen_val is None else (pen_val[0].to(device), pen_val[1].to(device)),
        "val": (x[val].to(device), y[val].to(device)),
        "val_raw": (train.data[val].to(device), y[val].to(device)),  # the same digits as MNIST's own 28x28
        "test_canvas": (torch.from_numpy(test_images).to(device), test_canvas_y.to(device)),
        "test_raw": (test.data.to(device), test.targets.to(device)),
        # What real_digit_presentations() presents other ways (a run with "not a digit" only)
        "mnist": (train.data, train.targets, val, test.data, test.targets),
    }


def real_digit_presentations(data: dict, pen, device) -> dict:
    """{presentation: ((validation x, y), (held-out x, y))} of real digits (train/presentations.py): MNIST
    as training draws it, five other ways, and pen digits; digits refused as blank left out."""
    canvas_test = data["test_canvas"]
    drawn = canvas_test[1] >= 0
    real = {"mnist_canvas": (data["val"], (canvas_test[0][drawn], canvas_test[1][drawn]))}
    for name, (val, held) in presentations.mnist_sets(*data["mnist"], Path(CACHE_DIR)).items():
        real[name] = tuple((x.to(device), y.to(device)) for x, y in (val, held))
    # The training writers' kept-out digits in 4 layouts each (1,000): a 0.3% quantile of their 250 alone
    # would be their single highest score.
    pen_val = pen_held_out_set(
        Path(PEN_DIGITS), lambda d: pendigits.validation(d, TUNE == 1), Path(CACHE_DIR), 4
    )
    if pen_val is not None and pen is not None:
        real["pen"] = tuple((x.to(device), y.to(device)) for x, y in (pen_val, pen))
    return real


def mnist(train: bool):
    """torchvision's MNIST in MNIST_DIR, downloaded if absent; one line, not a traceback, if that fails."""
    chatter = io.StringIO()  # torchvision prints every mirror it tries
    try:
        with contextlib.redirect_stdout(chatter):
            return torchvision.datasets.MNIST(MNIST_DIR, train=train, download=True)
    except (RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        sys.exit(
            f"error: MNIST is not in {MNIST_DIR!r} and could not be downloaded ({reason}); "
            f"point MNIST_DIR at a copy (the directory holding MNIST/raw): make train MNIST_DIR=/path/to/it"
        )


def as_input(images_u8, memory_format):
    return (images_u8.unsqueeze(1).float() / 255).contiguous(memory_format=memory_format)


@torch.no_grad()
def logits_of(model, images, memory_format, batch=2000):
    model.eval()
    return torch.cat(
        [model(as_input(images[i : i + batch], memory_format)).float() for i in range(0, len(images), batch)]
    )


def accuracy(model, data, memory_format):
    """Right answers' share; with REJECTION=head the 11th output is a score apart, never an answer."""
    logits = logits_of(model, data[0], memory_format)
    if REJECTION == "head":
        logits = logits[:, :NOT_A_DIGIT]
    return (logits.argmax(1) == data[1]).float().mean().item()


def main():
    if refused := shipped.refusal(OUT_DIR):  # model/default is replaced by hand, never by a run
        sys.exit(refused)
    if REJECTION not in ("head", "class"):  # before minutes of loading data, not after
        sys.exit(f"error: REJECTION={REJECTION!r}: choose head or class")
    torch.manual_seed(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        # THREADS=1 when the machine is shared: oversubscribed intra-op threads wait on each other.
        torch.set_num_threads(THREADS or os.cpu_count() or 1)
    # channels_last is what oneDNN's CPU convolutions (and tensor cores) run fastest on.
    memory_format = torch.channels_last
    started = time.time()
    data = load_mnist(device)
    fit, val = data["fit"], data["val"]

    classes = 11 if bool((fit[1] == 10).any()) else 10
    head = classes == 11 and REJECTION == "head"
    model = build_model(ARCH, classes).to(device).to(memory_format=memory_format)
    ema = copy.deepcopy(model).eval()
    steps_per_epoch = len(fit[0]) // BATCH_SIZE
    total_steps = max(1, math.ceil(EPOCHS * steps_per_epoch))
    if MAX_STEPS > 0:
        total_steps = min(total_steps, MAX_STEPS)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=total_steps, pct_start=0.25
    )
    amp_dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)  # bf16 has float32's range

    best = {"val_accuracy": -1.0}
    curves = {"step": [], "loss": [], "val_step": [], "val_accuracy": []}
    generator = torch.Generator(device=device).manual_seed(SEED)
    step, running = 0, None
    # Redrawn at most once a second; in a log file (not a terminal) the postfix never forces a redraw.
    bar = tqdm(total=total_steps, desc=f"train {ARCH}", unit="step", dynamic_ncols=True, mininterval=1.0)
    while step < total_steps:
        order = torch.randperm(len(fit[0]), generator=generator, device=device)
        for start in range(0, steps_per_epoch * BATCH_SIZE, BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            x = augment(as_input(fit[0][index], torch.contiguous_format), generator, ELASTIC).contiguous(
                memory_format=memory_format
            )
            model.train()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = model(x)
                if head:
                    loss = head_loss(outputs.float(), fit[1][index], LABEL_SMOOTHING)
                else:
                    loss = F.cross_entropy(outputs, fit[1][index], label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            update_ema(ema, model, step)
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            curves["step"].append(step)
            curves["loss"].append(running)
            bar.update()
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
            if step % EVAL_EVERY == 0 or step == total_steps:
                val_accuracy = accuracy(ema, val, memory_format)
                curves["val_step"].append(step)
                curves["val_accuracy"].append(val_accuracy)
                tqdm.write(
                    f"step {step:6d}  epoch {step / steps_per_epoch:5.2f}  loss {running:.4f}  "
                    f"val {val_accuracy:.4%}  {time.time() - started:6.1f} s"
                )
                if val_accuracy >= best["val_accuracy"]:  # on a tie, the longer-trained weights
                    best = {"val_accuracy": val_accuracy, "step": step, "state": _copy(ema)}
            if step == total_steps:
                break
    bar.close()

    ema.load_state_dict(best["state"])
    # One temperature for honest probabilities, fitted on the validation split, baked into the export
    # (over the ten digit logits: what the answer's probabilities are).
    val_logits = logits_of(ema, val[0], memory_format).cpu()
    temperature = fit_temperature(val_logits[:, :NOT_A_DIGIT], val[1].cpu())
    calibrated = RejectionHead(temperature) if head else Temperature(temperature)
    layers = [ema, calibrated]
    results = {"temperature": round(temperature, 4)}
    pen = pen_held_out_set(Path(PEN_DIGITS), cache_dir=Path(CACHE_DIR))
    # Rendered only where there is a threshold to choose (ten outputs: none; ~75,000 renders on a cold cache)
    real = real_digit_presentations(data, pen, device) if classes == 11 else {}
    if classes == 11:  # the threshold, on validation real digits only, the loosest any presentation asks
        thresholds = {
            name: choose_threshold(scores(calibrated(logits_of(ema, x, memory_format).cpu())), REJECT_TARGET)
            for name, ((x, _), _) in real.items()
        }
        threshold = max(thresholds.values())
        layers.append(NotADigitShift(threshold))
        results["not_a_digit"] = {
            "threshold": round(threshold, 4),
            "target": REJECT_TARGET,
            "chosen_on": {name: len(x) for name, ((x, _), _) in real.items()},
            "each_asks": {name: round(t, 4) for name, t in thresholds.items()},
        }
    model = torch.nn.Sequential(*layers).to(device).eval()
    sets = {
        "val_raw": data["val_raw"],  # validation as MNIST's own 28x28: what raw accuracy is tuned on
        "test_raw": data["test_raw"],  # the one look at the test set
        "test_canvas": data["test_canvas"],
    }
    if pen is not None:
        sets["pen_held_out"] = (pen[0].to(device), pen[1].to(device))
    # TUNE=1 only: writers 17-20, what recipes are chosen on
    tune = pen_held_out_set(Path(PEN_DIGITS), pendigits.tuning, Path(CACHE_DIR)) if TUNE == 1 else None
    if tune is not None:
        sets["pen_tune"] = (tune[0].to(device), tune[1].to(device))
    if data["pen_val"] is not None:
        sets["pen_val"] = data["pen_val"]
    for name, (images, labels) in sets.items():
        outputs = logits_of(model, images, memory_format).cpu()
        probabilities, labels = digit_probabilities(outputs), labels.cpu()
        results[f"{name}_accuracy"] = (probabilities.argmax(1) == labels).float().mean().item()
        results[f"{name}_ece"] = expected_calibration_error(probabilities, labels)
        if classes == 11:  # a real digit answered "not a digit" (those refused as blank, label -1, aside)
            rejected = not_a_digit_rows(torch.softmax(outputs, 1))
            drawn = labels >= 0
            results[f"{name}_rejected"] = rejected[drawn].float().mean().item()
            right = (probabilities.argmax(1) == labels) & ~rejected
            results[f"{name}_answered_right"] = right.float().mean().item()
    if classes == 11:  # real digits refused, presentation by presentation, held out and validation
        refused = {}
        for name, ((val_x, _), (held_x, _)) in real.items():
            refused[name] = {
                part: not_a_digit_rows(torch.softmax(logits_of(model, x, memory_format).cpu(), 1))
                .float()
                .mean()
                .item()
                for part, x in (("held_out", held_x), ("validation", val_x))
            }
        results["real_digits_refused"] = refused
        for family, images in nondigit_held_out_sets(4, Path(HERSHEY_FONTS), Path(CACHE_DIR)).items():
            outputs = logits_of(model, images.to(device), memory_format).cpu()
            rejected = not_a_digit_rows(torch.softmax(outputs, 1)).float().mean().item()
            results[f"nondigit_{family}_rejected"] = rejected
            results[f"nondigit_{family}_count"] = len(images)
    if PIECES > 0 and PEN_COPIES > 0 and Path(PEN_DIGITS).exists():
        results["piece_reader"] = piece_reader.train_piece_reader(
            Path(OUT_DIR), PIECES, PEN_COPIES, TUNE == 1, SEED, Path(PEN_DIGITS), Path(CACHE_DIR)
        )
    seconds = time.time() - started
    print(f"best val {best['val_accuracy']:.4%} at step {best['step']}; temperature {temperature:.3f}")
    for name in sets:
        rejected = f"  rejected {results[name + '_rejected']:.2%}" if classes == 11 else ""
        print(
            f"{name:>13}: accuracy {results[name + '_accuracy']:.4%}  ECE {results[name + '_ece']:.2%}{rejected}"
        )
    for key in results:
        if key.startswith("nondigit_") and key.endswith("_rejected"):
            print(f"{key[9:-9]:>13}: answered 'not a digit' {results[key]:.2%} (held-out family)")
    export(model, curves, results, best, step, step / steps_per_epoch, seconds)


def autocast_dtype(device):
    if AMP == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[AMP]


@torch.no_grad()
def update_ema(ema, model, step):
    """Moving average of the weights (and BatchNorm statistics); warms up so short runs work too."""
    decay = min(EMA_DECAY, (1 + step) / (10 + step))
    pairs = list(zip(ema.state_dict().values(), model.state_dict().values(), strict=True))
    floats = [(a, c) for a, c in pairs if a.dtype.is_floating_point]
    torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - decay)  # one call, not ~40
    for average, current in pairs:
        if not average.dtype.is_floating_point:
            average.copy_(current)  # BatchNorm's batch counter


def _copy(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def export(model, curves, results, best, steps, epochs, seconds):
    from train.report import plot_curves

    os.makedirs(OUT_DIR, exist_ok=True)
    model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    torch.jit.script(model).save(os.path.join(OUT_DIR, "model.pt"))
    metrics = {
        "arch": ARCH,
        "test_accuracy": results["test_raw_accuracy"],  # MNIST's own 28x28 test images
        **results,  # test_canvas_*: MNIST test drawn on canvases; pen_held_out_*: writers 21-30; ECE 15 bins
        "val_accuracy": best["val_accuracy"],
        "best_step": best["step"],
        "epochs": round(epochs, 3),
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "amp": AMP,
        "seconds": round(seconds, 1),
        "seed": SEED,
        "torch": torch.__version__,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": count_flops(model),  # per image, forward
        "config": CONFIG,  # every knob: CONFIG_FROM=this file re-runs the recipe
    }
    with open(os.path.join(OUT_DIR, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    title = (
        f"{ARCH}: test {results['test_raw_accuracy']:.2%}, on canvases {results['test_canvas_accuracy']:.2%}"
    )
    plot_curves(curves, os.path.join(OUT_DIR, "curves.png"), title=title)
    print(f"wrote {OUT_DIR}/model.pt, metrics.json, curves.png")


if __name__ == "__main__":
    main()
