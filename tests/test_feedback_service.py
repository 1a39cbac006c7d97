"""Feedback through the real web app process writing a real SQLite file: rows survive a restart, 16 clients
for 30 s lose nothing, and a locked or broken database is a 503 for feedback while /predict (real
TorchServe behind it) goes on answering."""

import asyncio
import contextlib
import random
import sqlite3
import threading
import time

import aiohttp
import pytest

from tests.drawings import drawing, feedback_body
from tests.stack import Stack, post, post_feedback
from web.feedback import drawing_and_input

pytestmark = pytest.mark.stack

CLIENTS, SECONDS = 16, 30  # the figure: 16 concurrent clients posting for 30 s


def count(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM feedback").fetchone()[0]


@pytest.fixture
def web_only(tmp_path):
    """The web app alone (no TorchServe: feedback needs none)."""
    stack = Stack(tmp_path / "run", tmp_path / "model_store")
    stack.run_dir.mkdir()
    yield stack
    stack.stop_web()


@contextlib.contextmanager
def web_app_with(stack, **env):
    """The shared stack's web app restarted with env; put back as it was afterwards."""
    stack.stop_web()
    try:
        stack.start_web(**env)
        yield stack
    finally:
        stack.stop_web()
        stack.start_web()


def test_feedback_survives_a_restart(web_only, tmp_path):
    db = tmp_path / "kept.sqlite3"
    web_only.start_web(FEEDBACK_DB=str(db))
    sent = [(i, i % 10, (i + 3) % 10) for i in range(5)]
    for i, label, predicted in sent:
        assert post_feedback(web_only.web_url, feedback_body(i, label, predicted))[0] == 201
    web_only.stop_web()
    web_only.start_web(FEEDBACK_DB=str(db))
    status, answer = post_feedback(web_only.web_url, feedback_body(5, 9, 9, "2.0"))
    assert (status, answer) == (201, {"id": 6})  # the sixth row: the first five are still there
    web_only.stop_web()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, label, predicted, version, png FROM feedback ORDER BY id").fetchall()
    expected = [*sent, (5, 9, 9)]
    assert [(r[0], r[1], r[2]) for r in rows] == [(i + 1, label, p) for i, label, p in expected]
    assert [r[3] for r in rows] == ["1.0"] * 5 + ["2.0"]
    # Each drawing as a row keeps it (its ink, web/feedback.py stored_drawing).
    assert [r[4] for r in rows] == [drawing_and_input(drawing(i).decode())[0] for i, _, _ in expected]


async def test_sixteen_clients_for_thirty_seconds_lose_nothing(web_only, tmp_path):
    db = tmp_path / "busy.sqlite3"
    web_only.start_web(FEEDBACK_DB=str(db))
    statuses: dict[int, int] = {}

    async def client(session, seed):
        rng = random.Random(seed)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            body = feedback_body(rng.randrange(16), rng.randrange(10), rng.randrange(10))
            async with session.post(
                web_only.web_url + "/api/feedback", data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=CLIENTS)
    ) as session:
        await asyncio.gather(*(client(session, seed) for seed in range(CLIENTS)))
    web_only.stop_web()
    stored, ok = count(db), sum(n for status, n in statuses.items() if 200 <= status < 300)
    print(f"\n{CLIENTS} clients, {SECONDS} s: answers {statuses}, rows stored {stored}")
    assert ok > CLIENTS * SECONDS  # real load: more than one feedback per client per second
    assert stored == ok
    assert set(statuses) == {201}  # and none refused: one writer keeps up with 16 clients


def test_a_locked_database_is_a_503_for_feedback_and_predict_goes_on(stack, tmp_path):
    db = tmp_path / "locked.sqlite3"
    with web_app_with(stack, FEEDBACK_DB=str(db)):
        assert post_feedback(stack.web_url, feedback_body(0, 3))[0] == 201
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a backup, a migration)
        try:
            answered = {}

            def feedback_while_locked():
                answered["feedback"] = post_feedback(stack.web_url, feedback_body(1, 4))
                answered["feedback_done"] = time.monotonic()

            waiting = threading.Thread(target=feedback_while_locked)
            waiting.start()
            time.sleep(0.2)  # the feedback is in, waiting for the lock
            predictions = [post(stack.web_url + "/predict", drawing(i)) for i in range(5)]
            predictions_done = time.monotonic()
            waiting.join(30)
        finally:
            holder.rollback() if holder.in_transaction else None
            holder.close()
        assert [status for status, _ in predictions] == [200] * 5
        # The predictions were answered while the feedback still waited for the lock: nothing blocked them.
        assert predictions_done < answered["feedback_done"]
        status, answer = answered["feedback"]
        assert status == 503 and "error" in answer
        # The lock gone, feedback is stored again without a restart; the refused one left no row.
        assert post_feedback(stack.web_url, feedback_body(2, 5))[0] == 201
        assert count(db) == 2


def test_a_broken_database_is_a_503_for_feedback_and_predict_goes_on(stack, tmp_path):
    db = tmp_path / "broken.sqlite3"
    db.write_bytes(b"this is not a database " * 200)
    with web_app_with(stack, FEEDBACK_DB=str(db)):  # the app starts all the same
        status, answer = post_feedback(stack.web_url, feedback_body(0, 3))
        assert status == 503 and "error" in answer
        assert [post(stack.web_url + "/predict", drawing(i))[0] for i in range(3)] == [200] * 3
        # Repaired (here: the bad file moved away), feedback works without a restart.
        db.rename(tmp_path / "broken.sqlite3.bad")
        assert post_feedback(stack.web_url, feedback_body(1, 4))[0] == 201
        assert count(db) == 1
