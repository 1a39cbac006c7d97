"""The writer's memory without servers (docs/writers.md): the rule (handler/adapt.py), the memory part, what
a feedback adds to a memory (web/feedback.py to_remember), the X-Writer id, the "not sure" ticket, and the
memory in a SQLite store (tests/test_feedback_postgres.py: the same on PostgreSQL)."""

import asyncio
import time
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from aiohttp.test_utils import make_mocked_request

from handler.adapt import NOT_A_DIGIT, SIMILAR, STRENGTH, adapt, normalised, pack, unpack
from web.feedback import to_remember
from web.feedback_store import MEMORY_DAYS, MEMORY_SIZE, FeedbackStore, writer_memory
from web.tickets import TicketError, Tickets, unsure, was_unsure
from web.writers import DOWN_FOR, BadWriter, Writers, writer_key

RNG = np.random.default_rng(0)
F = normalised(RNG.normal(size=(4, 128)))


def probabilities(top: int, p: float, k: int = 11) -> np.ndarray:
    row = np.full(k, (1 - p) / (k - 1))
    row[top] = p
    return row[np.newaxis]


def test_no_memory_changes_nothing():
    p = probabilities(7, 0.9)
    for memory in (None, (np.zeros(0, np.int64), np.zeros((0, 128)))):
        out, adapted = adapt(p, F[:1], memory)
        assert out is p and not adapted.any()


def test_a_far_drawing_changes_nothing():
    out, adapted = adapt(probabilities(7, 0.9), F[:1], (np.array([1]), F[1:2]))  # random: cosine ~0
    assert not adapted.any() and out[0].argmax() == 7


def test_the_same_drawing_takes_the_writers_label_even_from_a_refusal():
    for top, p in ((7, 0.98), (NOT_A_DIGIT, 0.999)):
        out, adapted = adapt(probabilities(top, p), F[:1], (np.array([1]), F[:1]))
        assert adapted.all() and out[0].argmax() == 1 and out[0][NOT_A_DIGIT] < 0.5
        assert np.isclose(out.sum(), 1)


def test_a_sure_model_keeps_its_answer_beside_a_drawing_that_is_only_near():
    near = normalised(F[:1] + 0.5 * F[1:2])  # cosine ~0.9 to F[0]
    out, adapted = adapt(probabilities(2, 0.9999), F[:1], (np.array([3]), near))
    assert adapted.all() and out[0].argmax() == 2
    assert STRENGTH * (float(near[0] @ F[0]) - SIMILAR) / (1 - SIMILAR) < np.log(0.9999 / (0.0001 / 10))


def test_not_a_digit_remembered_means_nothing_to_a_model_of_ten_outputs():
    out, adapted = adapt(probabilities(7, 0.9, k=10), F[:1], (np.array([NOT_A_DIGIT]), F[:1]))
    assert not adapted.any() and out[0].argmax() == 7


def test_the_rules_constants_can_be_tried_without_changing_the_served_ones():
    near = normalised(F[:1] + 0.5 * F[1:2])  # cosine ~0.9 to F[0]
    p = probabilities(2, 0.9)
    assert not adapt(p, F[:1], (np.array([3]), near), similar=0.95)[1].any()
    assert adapt(p, F[:1], (np.array([3]), near), similar=0.8, strength=40)[0][0].argmax() == 3
    assert np.array_equal(
        adapt(p, F[:1], (np.array([3]), near))[0],
        adapt(p, F[:1], (np.array([3]), near), SIMILAR, STRENGTH)[0],
    )


def test_the_memory_part_round_trips_and_refuses_what_is_not_one():
    images = [bytes([i]) * 784 for i in range(3)]
    labels, pixels = unpack(pack([1, 7, NOT_A_DIGIT], images))
    assert labels.tolist() == [1, 7, NOT_A_DIGIT] and pixels.shape == (3, 28, 28)
    assert np.isclose(pixels[2, 0, 0], 2 / 255)
    for bad in (pack([11], images[:1]), pack([1, 2], images[:1]), pack([1], images[:1])[:-6], b"not zlib"):
        with pytest.raises((ValueError, zlib.error)):
            unpack(bad)


@pytest.mark.parametrize(
    "item, unsure_answer, remembered",
    [
        ({"label": 1, "predicted": 7}, False, 1),  # a correction
        ({"label": 7, "predicted": 7}, False, None),  # a sure answer confirmed: nothing to learn
        ({"label": 7, "predicted": 7}, True, 7),  # an answer shown "not sure", confirmed
        ({"label": 1, "predicted": NOT_A_DIGIT}, False, 1),  # a refused 1 corrected
        ({"number": "1", "predicted": "7"}, False, 1),
        ({"number": "1", "predicted": None}, False, 1),
        ({"number": "not_a_digit", "predicted": None}, True, NOT_A_DIGIT),
        ({"number": "not_a_digit", "predicted": "4"}, False, NOT_A_DIGIT),
        ({"number": "42", "predicted": "47"}, False, None),  # a number's cuts are not in the feedback
    ],
)
def test_what_a_feedback_adds_to_the_writers_memory(item, unsure_answer, remembered):
    assert to_remember(item, unsure_answer) == remembered


def test_a_ticket_says_whether_the_answer_was_shown_not_sure():
    tickets = Tickets()
    for p, expected in ((0.79, True), (0.8, False)):
        answer = {"digit": 7, "probabilities": [p] + [(1 - p) / 9] * 9}
        ticket = tickets.issue("0" * 64, "1.0", 7, unsure(answer))
        assert was_unsure(tickets.check(ticket, "0" * 64, "1.0", 7)) is expected
    number = {"digits": [{"probabilities": [0.99] + [0.01 / 9] * 9}, {"probabilities": [0.5, 0.5] + [0] * 8}]}
    assert unsure(number)
    issued, nonce, mac = tickets.issue("0" * 64, "1.0", 7).split(".")
    forged = f"{issued}.{nonce}u.{mac}"  # "not sure" claimed for a sure answer
    with pytest.raises(TicketError):
        tickets.check(forged, "0" * 64, "1.0", 7)


@pytest.mark.parametrize(
    "header, ok",
    [("q0vH8n2rTzS6XkLw1mUe9A", True), ("short", False), ("a" * 129, False), ("a+b/c=" * 5, False)],
)
def test_the_writer_id(header, ok):
    request = make_mocked_request("POST", "/predict", headers={"X-Writer": header})
    if ok:
        assert writer_key(request) != header and len(writer_key(request)) == 64  # its hash, never the id
    else:
        with pytest.raises(BadWriter):
            writer_key(request)
    assert writer_key(make_mocked_request("POST", "/predict")) is None


async def test_a_memory_in_sqlite_is_bounded_expires_and_is_forgotten(tmp_path):
    store = FeedbackStore(str(tmp_path / "feedback.sqlite3"))
    for i in range(MEMORY_SIZE + 2):
        await store.remember("a" * 64, i % 10, bytes([i % 256]) * 784)
    ids = await store.memory_ids("a" * 64)
    assert len(ids) == MEMORY_SIZE and (await store.memory("a" * 64, ids[:1]))[ids[0]][0] == 2
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=MEMORY_DAYS + 1)
    async with store.engine.begin() as conn:  # the first drawing kept, past its time
        await conn.execute(writer_memory.update().where(writer_memory.c.id == ids[0]).values(created_utc=old))
    assert await store.memory_ids("a" * 64) == ids[1:]  # ignored when read
    await store.remember("b" * 64, 1, bytes(784))  # and deleted at the next write of anyone's
    assert await store.forget("a" * 64) == MEMORY_SIZE - 1
    assert await store.memory_ids("a" * 64) == ()
    await store.close()


async def test_a_database_that_hangs_holds_no_drawing_up():
    """web/writers.py: a read that takes longer than WAIT leaves the drawing unadapted, and no drawing asks
    the database again for DOWN_FOR seconds."""

    class Hung:
        calls = 0

        async def memory_ids(self, writer):
            Hung.calls += 1
            await asyncio.sleep(60)

    now = [100.0]
    writers = Writers(Hung(), clock=lambda: now[0])
    writers.wait = 0.05
    started = time.monotonic()
    assert await writers.memory("a" * 64) == b""
    assert time.monotonic() - started < 1 and Hung.calls == 1
    assert await writers.memory("b" * 64) == b"" and Hung.calls == 1  # not asked again while down
    now[0] += DOWN_FOR
    assert await writers.memory("b" * 64) == b"" and Hung.calls == 2
    assert await writers.memory(None) == b""
