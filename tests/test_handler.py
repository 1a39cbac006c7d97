"""The TorchServe handler in-process, with TorchServe's own MockContext plus its real Context's response setters
(no Java, no frontend)."""

import base64
import random

import cv2
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from handler import mnist_handler
from handler.mnist_form import preprocess
from handler.mnist_handler import MnistHandler
from handler.segment import read_candidates
from tests.drawings import drawing
from tests.handler_context import Context as HandlerContext
from tests.handler_context import handle
from tests.models import MNIST_DIR
from train import nondigits, numbers, pendigits


class Context(HandlerContext):
    def __init__(self, model_dir):
        super().__init__(model_dir)
        self.manifest["model"]["modelVersion"] = "3.1"


@pytest.fixture(scope="module")
def handler_and_context(model_dir):
    context = Context(model_dir)
    handler = MnistHandler()
    handler.initialize(context)
    return handler, context


def canvas_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(pendigits.png_bytes(image)).decode()


def mnist_canvas(digit: np.ndarray) -> Image.Image:
    """An MNIST test digit as a person's 280x280 drawing: black ink on white, 10x larger."""
    ink = Image.fromarray(digit).resize((200, 200), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (280, 280), 0)
    canvas.paste(ink, (40, 30))
    return Image.eval(canvas, lambda v: 255 - v)


def test_runs_on_the_cpu_without_a_gpu(handler_and_context):
    handler, _ = handler_and_context
    assert str(handler.device) == "cpu"
    with torch.inference_mode():
        outputs, features = handler.model(torch.zeros(1, 1, 28, 28))  # split at load: handler/features.py
        assert outputs.device.type == "cpu" and features.shape == (1, 128)


def test_the_worker_keeps_to_its_threads_for_torch_and_opencv(handler_and_context):
    """One thread a worker (handler/model-config.yaml torch_threads) for OpenCV as for torch: OpenCV's
    default, a thread per core, spent a quarter more CPU on a /read (docs/performance.md)."""
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1


def test_the_frozen_model_answers_as_the_exported_one(handler_and_context, model_dir):
    """The handler freezes and optimizes model.pt at load (folded batch norms, fused ops): the same
    logits as model.pt as exported, to float rounding, at batch 1 and 4."""
    handler, _ = handler_and_context
    exported = torch.jit.load(str(model_dir / "model.pt"), map_location="cpu").eval()
    assert not list(handler.model.parameters()), "the weights should be frozen into constants"
    mnist = torchvision.datasets.MNIST(MNIST_DIR, train=False, download=True)
    images = torch.from_numpy(
        np.stack([preprocess(canvas_data_url(mnist_canvas(mnist.data[i].numpy()))) for i in range(4)])
    ).unsqueeze(1)
    with torch.inference_mode():
        for batch in (images[:1], images):
            outputs, _ = handler.model(batch)
            assert torch.allclose(outputs, exported(batch), atol=1e-4, rtol=1e-4)


def test_batch_answers_each_item_and_marks_bad_ones(handler_and_context):
    handler, context = handler_and_context
    mnist = torchvision.datasets.MNIST(MNIST_DIR, train=False, download=True)
    digits = [(mnist.data[i].numpy(), int(mnist.targets[i])) for i in range(20)]
    blank = canvas_data_url(Image.new("L", (280, 280), 255))
    batch = [{"data": canvas_data_url(mnist_canvas(image)).encode()} for image, _ in digits]
    batch.insert(3, {"body": blank})
    batch.insert(7, {"data": b"hello, world!"})

    answers = handle(handler, context, batch)

    assert len(answers) == len(batch)
    assert set(context.statuses) == {3, 7}
    assert context.statuses[3][0] == 422 and "no digit" in answers[3]["error"]
    # Text that is neither a data URL nor base64 is no image in any form we take: 415, as a text file is.
    assert context.statuses[7][0] == 415 and "neither a data URL nor base64" in answers[7]["error"]
    good = [a for i, a in enumerate(answers) if i not in (3, 7)]
    assert all(a["version"] == "3.1" for a in good)
    assert all(abs(sum(a["probabilities"]) - 1) < 1e-4 and len(a["probabilities"]) == 10 for a in good)
    assert all(a["digit"] == int(np.argmax(a["probabilities"])) for a in good)
    correct = sum(a["digit"] == label for a, (_, label) in zip(good, digits, strict=True))
    assert correct >= 18, f"{correct}/20 MNIST digits read right"


def test_a_fault_reading_one_drawing_is_that_drawings_500_and_the_others_are_answered(
    handler_and_context, monkeypatch
):
    """A bug one drawing's bytes find (here: a deliberate one) fails that drawing alone: an exception out
    of the handler would fail the whole batch."""
    handler, context = handler_and_context
    real = mnist_handler.digit_image

    def faulty(body):
        if body == b"poison":
            raise IndexError("a bug only this drawing finds")
        return real(body)

    monkeypatch.setattr(mnist_handler, "digit_image", faulty)
    alone = handle(handler, context, [{"data": drawing(0)}])[0]
    answers = handle(handler, context, [{"data": drawing(0)}, {"data": b"poison"}, {"data": b"[" * 5000}])
    assert answers[0] == alone and "digit" in alone
    assert set(context.statuses) == {1, 2}
    assert context.statuses[1][0] == 500 and "failed on this drawing" in answers[1]["error"]
    assert context.statuses[2][0] == 400 and "nests deeper" in answers[2]["error"]


def test_answer_carries_the_image_the_model_saw(handler_and_context):
    handler, context = handler_and_context
    drawing = pendigits.layout(pendigits.load()[0], random.Random(1))
    answer = handle(handler, context, [{"data": canvas_data_url(pendigits.render(drawing))}])[0]
    seen = np.frombuffer(base64.b64decode(answer["input_28x28"]), dtype=np.uint8).reshape(28, 28)
    rows, cols = np.nonzero(seen > 64)
    # MNIST's form: the longer side of the ink is 20 px, and the rest of the 28x28 is black.
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in range(18, 23)
    assert seen[0].max() == 0 and seen[-1].max() == 0


def test_json_and_raw_png_bodies_give_the_same_answer(handler_and_context):
    handler, context = handler_and_context
    drawing = pendigits.layout(pendigits.load()[5], random.Random(2))
    png = pendigits.png_bytes(pendigits.render(drawing))
    url = canvas_data_url(pendigits.render(drawing))
    bodies = [{"body": png}, {"body": {"image": url}}, {"data": url}, {"data": url.split(",", 1)[1]}]
    answers = handle(handler, context, bodies)
    assert len({a["digit"] for a in answers}) == 1
    assert np.allclose([a["probabilities"] for a in answers], answers[0]["probabilities"], atol=1e-6)


def test_a_request_of_parts_is_answered_part_by_part_as_each_alone(handler_and_context):
    """The web app's batches (web/batching.py): parts drawing-0, drawing-1, ... in one request, next to a
    plain request in the same TorchServe batch. Each part is answered as it would be alone, with its own
    status, in a list; the request itself is 200."""
    handler, context = handler_and_context
    drawings = [
        canvas_data_url(pendigits.render(pendigits.layout(d, random.Random(i))))
        for i, d in enumerate(pendigits.load()[:3])
    ]
    blank = canvas_data_url(Image.new("L", (280, 280), 255))
    bodies = [
        drawings[0].encode(),
        blank.encode(),
        b"hello, world!",
        drawings[1].encode(),
        drawings[2].encode(),
    ]
    context.statuses.clear()
    alone = handle(handler, context, [{"body": b} for b in bodies])
    alone_statuses = [context.statuses.get(i, (200,))[0] for i in range(len(bodies))]
    context.statuses.clear()

    plain, batch = handle(
        handler, context, [{"data": drawings[2]}, {f"drawing-{i}": b for i, b in enumerate(bodies)}]
    )

    assert context.statuses == {}
    assert [part["status"] for part in batch] == alone_statuses == [200, 422, 415, 200, 200]
    # The same answers, to float rounding: a batch of other size may take other kernels.
    for got, expected in zip([plain] + [part["answer"] for part in batch], alone[4:] + alone, strict=True):
        assert got.keys() == expected.keys()
        assert {k: v for k, v in got.items() if k != "probabilities"} == {
            k: v for k, v in expected.items() if k != "probabilities"
        }
        assert np.allclose(got.get("probabilities", []), expected.get("probabilities", []), atol=1e-5)


def drawn(drawing) -> bytes:
    return canvas_data_url(pendigits.render(drawing)).encode()


def test_a_drawn_letter_is_not_a_digit_and_still_carries_the_guess(handler_and_context):
    """Letters drawn like the page draws (round brush 8-20 px, random size and place): 422 with reason
    not_a_digit, the best digit guess and its probabilities over the ten digits."""
    handler, context = handler_and_context
    letters = [nondigits.letter(char, seed=i) for i, char in enumerate("AHKMWX")]
    answers = handle(handler, context, [{"data": drawn(d)} for d in letters])
    rejected = [i for i, a in enumerate(answers) if a.get("reason") == "not_a_digit"]
    assert len(rejected) >= 5, answers
    for i in rejected:
        assert context.statuses[i][0] == 422
        answer = answers[i]
        assert "digit" in answer["error"] and answer["version"] == "3.1"
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-4
        assert answer["digit"] == int(np.argmax(answer["probabilities"]))
        assert len(base64.b64decode(answer["input_28x28"])) == 784


def test_a_drawn_7_is_a_7_and_a_blank_canvas_is_no_digit(handler_and_context):
    handler, context = handler_and_context
    sevens = [d for d in pendigits.held_out(pendigits.load()) if d.label == 7][:5]
    blank = canvas_data_url(Image.new("L", (280, 280), 255)).encode()
    rows = [{"data": drawn(pendigits.layout(d, random.Random(i)))} for i, d in enumerate(sevens)]
    answers = handle(handler, context, rows + [{"data": blank}])
    assert [a.get("digit") for a in answers[:5]] == [7] * 5, answers
    assert context.statuses[5][0] == 422 and answers[5]["reason"] == "no_digit"


def test_a_batch_mixing_letters_and_digits_answers_each_on_its_own(handler_and_context):
    """One request of parts (web/batching.py): each part's answer is what it alone gets."""
    handler, context = handler_and_context
    seven = next(d for d in pendigits.held_out(pendigits.load()) if d.label == 7)
    bodies = [
        drawn(nondigits.letter("H")),
        drawn(pendigits.layout(seven, random.Random(0))),
        drawn(nondigits.letter("X")),
    ]
    alone = handle(handler, context, [{"data": b} for b in bodies])
    alone_statuses = [context.statuses.get(i, (200,))[0] for i in range(len(bodies))]
    batch = handle(handler, context, [{f"drawing-{i}": b for i, b in enumerate(bodies)}])[0]
    assert [part["status"] for part in batch] == alone_statuses
    assert alone_statuses[1] == 200 and batch[1]["answer"]["digit"] == 7
    assert [part["answer"].get("reason") for part in batch] == [a.get("reason") for a in alone]
    assert "not_a_digit" in [part["answer"].get("reason") for part in batch]


def test_each_part_says_how_many_images_of_it_the_model_read(handler_and_context):
    """The work a part was, which /read is charged by (web/ratelimit.py): a number part's candidate pieces
    as read_candidates cuts it, a digit part's one image, none for a part refused before the model (a
    blank number, text that is no image)."""
    handler, context = handler_and_context
    digits = pendigits.trainable(pendigits.load())
    touching, apart = (
        next(n for n in numbers.numbers(digits, 12, random.Random(1)) if n.spacing == s and len(n.label) >= 4)
        for s in ("touching", "apart")
    )
    blank = canvas_data_url(Image.new("L", (560, 280), 255)).encode()
    seven = drawn(pendigits.layout(next(d for d in digits if d.label == 7), random.Random(0)))
    rows = {"number-0": touching.png, "drawing-1": seven, "number-2": blank, "number-3": apart.png}
    [parts] = handle(handler, context, [{**rows, "drawing-4": b"hello, world!"}])
    assert [part["status"] for part in parts] == [200, 200, 422, 200, 415]
    expected = [len(read_candidates(touching.png).images), 1, 0, len(read_candidates(apart.png).images), 0]
    assert [part["pieces"] for part in parts] == expected
    assert expected[0] > 4 * expected[3], "touching digits are cut many ways; apart ones hardly"
