"""The web app's batching (web/batching.py): alone, a drawing goes at once; together, drawings go as one
multipart request and each gets its own answer back, digits (/predict) and numbers (/read) alike; waiting
clients take turns in a batch. First against a recording stand-in for TorchServe, then through the real
TorchServe and handler."""

import asyncio
import json
import random
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from unittest.mock import ANY

import aiohttp
import pytest

from tests.drawings import BAD_INPUTS, drawing
from tests.fake_torchserve import parts as named_parts
from tests.stack import post
from web.batching import DRAWING, MAX_BATCH_BYTES, NUMBER, Batcher, multipart, split


class FakeModel:
    """Answers each request after `delay` s with {"echo": <drawing>} per drawing (a list for a batch, as
    the handler does; a part's answer also says the kind its name gave it, and a number part's pieces are
    its length), or with `status` for the whole request; records what each request carried, and its
    parts' names (None: a plain request)."""

    def __init__(self, delay: float = 0.01, status: int = 200):
        self.delay, self.status = delay, status
        self.requests: list[tuple[str, list[bytes]]] = []
        self.names: list[list[str] | None] = []

    async def __call__(self, body: bytes, version: str, content_type: str):
        named = named_parts(body, content_type) if content_type.startswith("multipart/") else None
        self.requests.append((version, [body] if named is None else [b for _, b in named]))
        self.names.append(None if named is None else [name for name, _ in named])
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return self.status, b'{"message": "down"}'
        if named is None:
            return 200, json.dumps({"echo": body.decode()}).encode()
        answers = [
            {"status": 200, "answer": {"echo": b.decode(), "kind": name.split("-")[0]}, "pieces": len(b)}
            if name.startswith(NUMBER)
            else {"status": 200, "answer": {"echo": b.decode(), "kind": DRAWING}}  # no pieces: 1
            for name, b in named
        ]
        return 200, json.dumps(answers).encode()


def parts(body: bytes, content_type: str) -> list[bytes]:
    return [b for _, b in named_parts(body, content_type)]


async def test_a_lone_drawing_goes_at_once_as_a_plain_request():
    model = FakeModel()
    batcher = Batcher(model)
    status, body, pieces = await batcher.predict("", b"a")
    assert (status, json.loads(body), pieces) == (200, {"echo": "a"}, 1)
    assert model.requests == [("", [b"a"])] and model.names == [None]
    assert batcher.lines == {}, "an idle version is forgotten"


async def test_a_lone_number_goes_as_a_request_of_one_part_named_number_0():
    """A plain body is a digit to the handler: a number to read is always a part."""
    model = FakeModel()
    status, body, pieces = await Batcher(model).predict("", b"nine", NUMBER)
    assert (status, json.loads(body), pieces) == (200, {"echo": "nine", "kind": "number"}, 4)
    assert model.requests == [("", [b"nine"])] and model.names == [["number-0"]]


async def test_digits_and_numbers_share_the_batches_and_each_gets_the_answer_of_its_kind():
    model = FakeModel()
    batcher = Batcher(model, max_batch=8, in_flight=2)
    sent = [(NUMBER if i % 3 else DRAWING, f"d{i}".encode()) for i in range(8)]
    replies = await asyncio.gather(*(batcher.predict("", body, kind) for kind, body in sent))
    for (kind, body), (status, reply, pieces) in zip(sent, replies, strict=True):
        answer = json.loads(reply)
        assert status == 200 and answer["echo"] == body.decode(), answer
        assert answer.get("kind", DRAWING) == kind
        assert pieces == (len(body) if kind == NUMBER else 1), "each number's own pieces come back with it"
    # d0 and d1 go at once, alone (1 + 1); the other six wait and go as one request, each part named by
    # its kind and its place. Only the lone digit went as a plain body.
    assert model.names == [
        None,
        ["number-0"],
        ["number-0", "drawing-1", "number-2", "number-3", "drawing-4", "number-5"],
    ]


async def test_drawings_that_arrive_while_the_model_is_busy_go_together_and_get_their_own_answers():
    model = FakeModel()
    batcher = Batcher(model, max_batch=8, in_flight=2)
    names = [f"d{i}".encode() for i in range(6)]
    replies = await asyncio.gather(*(batcher.predict("", name) for name in names))
    assert [json.loads(reply.body)["echo"] for reply in replies] == [n.decode() for n in names]
    # d0 finds the model idle and goes alone; d1 is as many as went last, so it goes too, to wait at
    # TorchServe behind d0; d2-d5 wait for an answer and go as one request.
    assert [drawings for _, drawings in model.requests] == [names[:1], names[1:2], names[2:]]


async def test_batches_grow_with_the_queue_up_to_max_batch_and_keep_the_worker_fed():
    model = FakeModel(delay=0.05)
    batcher = Batcher(model, max_batch=4, in_flight=2)
    names = [f"d{i}".encode() for i in range(11)]
    tasks = [asyncio.create_task(batcher.predict("", name)) for name in names]
    await asyncio.sleep(0.02)  # nothing has come back yet: two requests out (in_flight), nine wait
    assert [len(drawings) for _, drawings in model.requests] == [1, 1]
    await asyncio.gather(*tasks)
    # Each answer lets the waiting go, a full batch at most; a batch joins the one out only once it is
    # as large as that one, so the last drawing waits for both to come back rather than go alone.
    assert [len(drawings) for _, drawings in model.requests] == [1, 1, 4, 4, 1]
    assert [d for _, drawings in model.requests for d in drawings] == names


async def test_versions_are_batched_apart():
    model = FakeModel()
    batcher = Batcher(model)
    sent = [(v, f"{v}:{i}".encode()) for i in range(6) for v in ("", "2.0")]
    await asyncio.gather(*(batcher.predict(v, body) for v, body in sent))
    for version in ("", "2.0"):
        requests = [drawings for v, drawings in model.requests if v == version]
        assert all(d.startswith(f"{version}:".encode()) for drawings in requests for d in drawings)
        assert [len(drawings) for drawings in requests] == [1, 1, 4]


def sent(model: FakeModel) -> list[list[bytes]]:
    return [drawings for _, drawings in model.requests]


async def test_a_clients_burst_does_not_queue_ahead_of_another_clients_drawing():
    """The flood of docs/limits.md: A's 16 admitted drawings wait while a request is out; B's one, come
    after them, goes in the next batch sent, not behind all 16."""
    model = FakeModel(delay=0.05)
    batcher = Batcher(model, max_batch=8, in_flight=1)
    out = asyncio.create_task(batcher.predict("", b"out", client="A"))
    await asyncio.sleep(0)  # at the model: everything after it waits
    burst = [f"a{i}".encode() for i in range(16)]
    tasks = [asyncio.create_task(batcher.predict("", body, client="A")) for body in burst]
    tasks.append(asyncio.create_task(batcher.predict("", b"b", client="B")))
    await out
    # The answer let the next batch go: one of A's, B's, then A's again.
    assert sent(model) == [[b"out"], [b"a0", b"b", *burst[1:7]]]
    line = batcher.lines[""]
    assert list(line.waiting) == ["A"] and line.queued == 9, "B left once its drawing went"
    replies = await asyncio.gather(*tasks)
    assert [json.loads(reply.body)["echo"] for reply in replies] == [d.decode() for d in [*burst, b"b"]]
    assert sent(model) == [[b"out"], [b"a0", b"b", *burst[1:7]], burst[7:15], burst[15:]]


async def test_a_batch_takes_one_drawing_of_each_client_in_turn_from_after_the_one_served_last():
    model = FakeModel(delay=0.02)
    batcher = Batcher(model, max_batch=8, in_flight=1)
    tasks = [asyncio.create_task(batcher.predict("", b"out", client="X"))]
    await asyncio.sleep(0)
    tasks += [
        asyncio.create_task(batcher.predict("", f"{c}{i}".encode(), client=c))
        for c in "ABC"
        for i in range(4)
    ]
    await asyncio.gather(*tasks)
    # The second batch ends with B's: the third starts with C, not A again.
    assert sent(model) == [
        [b"out"],
        [b"A0", b"B0", b"C0", b"A1", b"B1", b"C1", b"A2", b"B2"],
        [b"C2", b"A3", b"B3", b"C3"],
    ]


async def test_each_clients_drawings_go_in_their_arrival_order_and_get_their_own_answers():
    rng = random.Random(7)
    model = FakeModel(delay=0.01)
    batcher = Batcher(model, max_batch=4, in_flight=2)
    arrived, bodies, tasks = {c: [] for c in "ABC"}, [], []
    for i in range(80):
        client = rng.choice("AAAABC")  # A sends most
        bodies.append(f"{client}{i}".encode())
        arrived[client].append(bodies[-1])
        tasks.append(asyncio.create_task(batcher.predict("", bodies[-1], client=client)))
        if rng.random() < 0.2:
            await asyncio.sleep(0.004)  # some arrive while requests are out, some while none is
    replies = await asyncio.gather(*tasks)
    assert [json.loads(reply.body)["echo"].encode() for reply in replies] == bodies
    assert len(model.requests) > 10, "the drawings travelled in batches"
    for client, drawings in arrived.items():
        assert [d for batch in sent(model) for d in batch if d.startswith(client.encode())] == drawings
    assert batcher.lines == {}


async def test_the_queue_holds_only_clients_with_drawings_waiting_and_is_empty_once_all_are_answered():
    model = FakeModel(delay=0.02)
    batcher = Batcher(model, max_batch=4, in_flight=1)
    first = asyncio.create_task(batcher.predict("", b"first", client="X"))
    await asyncio.sleep(0)
    line = batcher.lines[""]
    assert line.waiting == {} and line.queued == 0, "X left when its drawing went"
    counts = {"A": 3, "B": 1, "C": 2, "D": 1, "E": 1, "F": 1}
    tasks = [
        asyncio.create_task(batcher.predict("", f"{c}{i}".encode(), client=c))
        for c, n in counts.items()
        for i in range(n)
    ]
    gone = asyncio.create_task(batcher.predict("", b"gone", client="G"))
    await asyncio.sleep(0)
    assert list(line.waiting) == [*"ABCDEFG"] and line.queued == 10
    gone.cancel()
    await first
    # One each of A, B, C and D went: B and D left, A and C wait behind the others.
    assert list(line.waiting) == [*"EFGAC"] and line.queued == 6
    await asyncio.gather(*tasks)
    with pytest.raises(asyncio.CancelledError):
        await gone
    # G's only drawing was gone when its turn came: skipped, and G left with it.
    assert sent(model) == [[b"first"], [b"A0", b"B0", b"C0", b"D0"], [b"E0", b"F0", b"A1", b"C1"], [b"A2"]]
    assert line.waiting == {} and line.queued == 0 and batcher.lines == {}


async def test_a_batch_stays_under_the_byte_limit():
    model = FakeModel()
    batcher = Batcher(model, max_batch=8)
    big = b"x" * (MAX_BATCH_BYTES // 2)
    await asyncio.gather(*(batcher.predict("", big) for _ in range(5)))
    assert [len(drawings) for _, drawings in model.requests] == [1, 1, 2, 1]


async def test_a_drawing_the_byte_limit_holds_back_opens_the_next_batch_its_clients_turn_kept():
    model = FakeModel()
    batcher = Batcher(model, max_batch=8, in_flight=1)
    tasks = [asyncio.create_task(batcher.predict("", b"out", client="X"))]
    await asyncio.sleep(0)
    big = [f"a{i}".encode() + b"x" * (MAX_BATCH_BYTES // 2) for i in range(2)]
    tasks += [asyncio.create_task(batcher.predict("", body, client="A")) for body in big]
    tasks += [asyncio.create_task(batcher.predict("", body, client="B")) for body in (b"b0", b"b1")]
    await asyncio.gather(*tasks)
    assert sent(model) == [[b"out"], [big[0], b"b0"], [big[1], b"b1"]]


async def test_a_failed_request_fails_each_of_its_drawings_and_the_next_ones_still_go():
    model = FakeModel(status=503)
    batcher = Batcher(model)
    replies = await asyncio.gather(*(batcher.predict("", b"x") for _ in range(3)))
    assert replies == [(503, b'{"message": "down"}', 1)] * 3  # each went alone: a plain request

    async def unreachable(body, version, content_type):
        raise aiohttp.ClientConnectionError("refused")

    batcher = Batcher(unreachable)
    results = await asyncio.gather(*(batcher.predict("", b"x") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, aiohttp.ClientConnectionError) for r in results)
    batcher.ask = FakeModel()
    assert (await batcher.predict("", b"y"))[0] == 200


class PoisonedModel(FakeModel):
    """As FakeModel, but any request carrying b"bad" fails whole with 503, as TorchServe fails a batch whose
    handler raised; `resets` requests first fail with a reset connection, as when the worker is killed."""

    def __init__(self, resets: int = 0):
        super().__init__(delay=0.05)
        self.resets = resets

    async def __call__(self, body: bytes, version: str, content_type: str):
        if self.resets:
            self.resets -= 1
            self.requests.append((version, [body]))
            raise aiohttp.ServerDisconnectedError()
        if b"bad" in body:
            self.requests.append((version, [body]))
            return 503, b'{"message": "Prediction failed"}'
        return await super().__call__(body, version, content_type)


async def test_a_drawing_that_fails_its_batch_fails_alone_and_the_others_are_asked_again_alone():
    model = PoisonedModel()
    batcher = Batcher(model, max_batch=8)
    first = asyncio.create_task(batcher.predict("", b"busy", client="a"))  # the rest queue behind it
    await asyncio.sleep(0.01)
    sent = [(f"c{i}", b"bad" if i == 2 else f"good{i}".encode()) for i in range(5)]
    replies = await asyncio.gather(*(batcher.predict("", body, client=c) for c, body in sent))
    assert (await first)[0] == 200
    for (_, body), (status, reply, _) in zip(sent, replies, strict=True):
        if body == b"bad":
            assert status == 503
        else:
            assert (status, json.loads(reply)) == (200, {"echo": body.decode()})
    # The batch of five went once, then each of its drawings alone: a plain request each.
    assert [len(bodies) for _, bodies in model.requests[1:]] == [1, 1, 1, 1, 1, 1]


async def test_a_batch_whose_connection_dies_is_asked_again_once_alone_on_the_fresh_connection():
    model, fresh = PoisonedModel(resets=1), FakeModel()
    batcher = Batcher(model, max_batch=8, ask_again=fresh)
    replies = await asyncio.gather(*(batcher.predict("", f"d{i}".encode(), client=str(i)) for i in range(3)))
    assert [json.loads(body) for _, body, _ in replies] == [{"echo": f"d{i}"} for i in range(3)]
    assert len(fresh.requests) >= 1 and all(len(bodies) == 1 for _, bodies in fresh.requests)

    # A drawing's own 4xx and a timeout (504) are answers, never asked again.
    for status in (400, 504):
        refused, again = FakeModel(status=status), FakeModel()
        assert (await Batcher(refused, ask_again=again).predict("", b"x"))[0] == status
        assert again.requests == []


async def test_a_client_that_leaves_while_waiting_is_not_sent():
    model = FakeModel(delay=0.05)
    batcher = Batcher(model, in_flight=1)
    first = asyncio.create_task(batcher.predict("", b"first"))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.predict("", b"gone"))
    stays = asyncio.create_task(batcher.predict("", b"stays"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.gather(first, stays)
    assert [drawings for _, drawings in model.requests] == [[b"first"], [b"stays"]]
    assert batcher.lines == {}


async def test_a_drawing_gets_its_answer_or_a_timeout_within_the_timeout_its_wait_included():
    model = FakeModel(delay=0.3)
    batcher = Batcher(model, timeout=0.1)
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(batcher.predict("", b"x") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results), results
    assert asyncio.get_running_loop().time() - started < 0.25
    await asyncio.sleep(0.3)  # the two out came back; the third, that waited, was never sent
    assert len(model.requests) == 2 and batcher.lines == {}


def test_multipart_keeps_every_byte_and_a_batch_reply_splits_back_in_order():
    bodies = [bytes(random.Random(i).randbytes(300)) for i in range(3)] + [b"data:image/png;base64,AAAA"]
    body, content_type = multipart([(DRAWING, b) for b in bodies[:2]] + [(NUMBER, b) for b in bodies[2:]])
    assert parts(body, content_type) == bodies
    assert re.findall(rb'; name="(\w+-\d+)"', body) == [b"drawing-0", b"drawing-1", b"number-2", b"number-3"]
    answers = [
        {"status": 200, "answer": {"digit": 3}, "pieces": 1},
        {"status": 422, "answer": {"error": "no digit drawn"}, "pieces": 0},
        {"status": 200, "answer": {"number": "42"}, "pieces": 57},
        {"status": 200, "answer": {"number": "7"}},  # a handler from before "pieces": one image
    ]
    assert split((200, json.dumps(answers).encode()), 4) == [
        (200, b'{"digit":3}', 1),
        (422, b'{"error":"no digit drawn"}', 0),
        (200, b'{"number":"42"}', 57),
        (200, b'{"number":"7"}', 1),
    ]
    # TorchServe's own errors: no answer from the handler, no pieces read.
    assert split((404, b"{}"), 2) == [(404, b"{}", 0)] * 2
    # A reply that does not answer each drawing is no answer for any of them.
    assert [reply.status for reply in split((200, json.dumps(answers[:1]).encode()), 2)] == [500, 500]
    assert [reply.status for reply in split((200, b"not json"), 2)] == [500, 500]
    bad = [{**answers[2], "pieces": "many"}]
    assert split((200, json.dumps(bad).encode()), 1) == [(500, ANY, 0)]


def batch_sizes(web_url: str) -> tuple[float, float]:
    """(requests sent to TorchServe, drawings in them) from the web app's /metrics."""
    text = urllib.request.urlopen(web_url + "/metrics", timeout=10).read().decode()
    count = float(re.search(r"^digit_batch_size_count (\S+)$", text, re.M)[1])
    total = float(re.search(r"^digit_batch_size_sum (\S+)$", text, re.M)[1])
    return count, total


@pytest.mark.parametrize(
    "bad", ["a blank canvas", "text that is not a data URL", "a truncated PNG", "JSON nested 5,000 deep"]
)
def test_through_torchserve_a_bad_drawing_in_a_batch_gets_its_own_4xx_and_the_others_their_answers(
    stack, bad
):
    """Concurrent requests through the web app and the real TorchServe: they travel in batches, and each
    answer is what the drawing alone is answered."""
    body, content_type, status = BAD_INPUTS[bad]
    good = [drawing(index) for index in range(12)]
    alone = [post(stack.web_url + "/predict", d)[1]["digit"] for d in good]
    workers = stack.worker_pids()
    before = batch_sizes(stack.web_url)
    requests = [(d, "text/plain") for d in good]
    requests[5:5] = [(body, content_type)] * 3
    with ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(lambda r: post(stack.web_url + "/predict", *r), requests * 3))
    after = batch_sizes(stack.web_url)
    assert after[1] - before[1] == len(requests) * 3
    assert after[1] - before[1] > after[0] - before[0], "no two drawings travelled together"
    for (sent, _), (got, answer) in zip(requests * 3, replies, strict=True):
        if sent == body:
            assert got == status and isinstance(answer.get("error"), str), answer
        else:
            assert got == 200 and answer["digit"] == alone[good.index(sent)], answer
    assert stack.worker_pids() == workers


def test_through_torchserve_a_batch_mixing_letters_and_digits_answers_each_on_its_own(stack):
    """Letters and real digits sent at once travel in batches: each letter is its own 422 not_a_digit,
    each digit the answer it gets alone."""
    from train import nondigits, pendigits
    from train.canvases import data_url as canvas_url

    letters = [canvas_url(pendigits.render(nondigits.letter(c, seed=1))).decode() for c in "XHK"]
    alone_letters = [post(stack.web_url + "/predict", d.encode()) for d in letters]
    assert [a.get("reason") for _, a in alone_letters].count("not_a_digit") >= 2, alone_letters
    good = [drawing(index) for index in range(9)]
    alone = [post(stack.web_url + "/predict", d)[1]["digit"] for d in good]
    requests = (
        good[:3] + [letters[0].encode()] + good[3:6] + [letters[1].encode(), letters[2].encode()] + good[6:]
    )
    before = batch_sizes(stack.web_url)
    with ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(lambda body: post(stack.web_url + "/predict", body), requests * 3))
    after = batch_sizes(stack.web_url)
    assert after[1] - before[1] > after[0] - before[0], "no two drawings travelled together"
    for sent, (got, answer) in zip(requests * 3, replies, strict=True):
        if sent.decode() in letters:
            status, expected = alone_letters[letters.index(sent.decode())]
            assert (got, answer.get("reason"), answer.get("digit")) == (
                status,
                expected.get("reason"),
                expected.get("digit"),
            )
        else:
            assert got == 200 and answer["digit"] == alone[good.index(sent)], answer
