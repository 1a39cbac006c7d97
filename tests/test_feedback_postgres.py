"""The same feedback code on a real PostgreSQL server (Debian's `postgresql` package): the test starts a
throwaway cluster of its own in a temporary directory, on 127.0.0.1, as the unprivileged `postgres` user
(PostgreSQL refuses to run as root), and the web app takes its URL as FEEDBACK_DB."""

import asyncio
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.drawings import data_url, feedback_body
from tests.old_schemas import at_schema_3
from tests.stack import TICKET_KEY, Stack, get_json, post_feedback
from train import numbers, pendigits
from train.feedback_data import feedback_split, held_out, holdout_drawings
from web.feedback_store import (
    FEEDBACK_DEADLINE,
    MEMORY_SIZE,
    SCHEMA_VERSION,
    FeedbackStore,
    TicketReused,
    read_number_rows,
    read_rows,
)
from web.tickets import Tickets, drawing_hash, number_answered


def pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed: install Debian's `postgresql` (.ci/run does)")
    return os.path.dirname(found[-1])


def as_postgres_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A function giving the URL of a new, empty database on the test's own server."""
    bin_dir, port = pg_bin(), free_port()
    work = tempfile.mkdtemp(prefix="feedback-pg-")
    data = os.path.join(work, "data")
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    run = lambda *args: subprocess.run(as_postgres_user(list(args)), check=True, capture_output=True)  # noqa: E731
    run(f"{bin_dir}/initdb", "-D", data, "-U", "feedback", "--auth=trust", "--no-sync")
    # Loopback TCP only, the socket in our own directory: nothing of the machine's own PostgreSQL is touched.
    options = f"-h 127.0.0.1 -p {port} -k {work} -c fsync=on"
    run(f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-l", os.path.join(work, "log"), "-w", "start")

    def database(name: str) -> str:
        run(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "feedback", name)
        return f"postgresql://feedback@127.0.0.1:{port}/{name}"

    def pids() -> list[int]:
        """The server's processes: the postmaster and every process it forked (backends included)."""
        postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *map(int, children)]

    database.pids = pids
    try:
        yield database
    finally:
        stop = [f"{bin_dir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]
        subprocess.run(as_postgres_user(stop), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


async def test_the_store_on_postgresql_loses_nothing_under_concurrency(postgres):
    url = postgres("concurrency")
    # Without the web app's deadline: 200 writes at once queue for a pool sized for a web pod.
    store = FeedbackStore(url, deadline=False)
    await store.open()
    assert store.engine.dialect.name == "postgresql"
    png = bytes(range(256)) * 40  # binary with every byte value: bytea round trip

    async def one(i: int) -> int:
        return await store.add(
            version="1.0", label=i % 10, predicted=0, png=png + bytes([i % 256]), input_28x28=bytes(784)
        )

    ids = await asyncio.gather(*(one(i) for i in range(200)))
    assert len(set(ids)) == 200 and await store.count() == 200
    await store.close()
    reopened = FeedbackStore(url)  # a restart: the schema is found at its version, rows are kept
    rows = await reopened.rows()
    assert len(rows) == 200 and rows[-1].png.startswith(png)
    async with reopened.engine.connect() as conn:
        assert (await conn.execute(text("SELECT version FROM schema_version"))).scalar_one() == SCHEMA_VERSION
    await reopened.close()


@pytest.mark.stack
def number_body(number: str, seed: int = 0) -> bytes:
    """Feedback on a number /read answered right: two held-out pen digits of one writer written apart
    (train/numbers.py), its ticket signed as web/app.py signs a /read answer, with the stack's key."""
    digits = pendigits.held_out(pendigits.load())
    writer = digits[0].writer
    chosen = [next(d for d in digits if d.writer == writer and d.label == int(c)) for c in number]
    png, label, _ = numbers.compose(chosen, random.Random(seed), (560, 280), "apart")
    image = data_url(png).decode()
    ticket = Tickets(TICKET_KEY.encode()).issue(
        drawing_hash(image), "1.0", number_answered(200, {"number": label})
    )
    doc = {"image": image, "number": label, "predicted": label, "version": "1.0", "ticket": ticket}
    return json.dumps(doc).encode()


@pytest.mark.stack
def test_the_web_app_stores_feedback_on_postgresql_and_training_reads_it(postgres, tmp_path):
    postgres_url = postgres("web")
    stack = Stack(tmp_path / "run", tmp_path / "model_store")
    stack.run_dir.mkdir()
    try:
        stack.start_web(FEEDBACK_DB=postgres_url)
        for i in range(6):
            status, answer = post_feedback(stack.web_url, feedback_body(i, label=i))
            assert status == 201, answer
        status, answer = post_feedback(stack.web_url, number_body("42"))
        assert status == 201, answer
        stack.stop_web()
        stack.start_web(FEEDBACK_DB=postgres_url)
        assert post_feedback(stack.web_url, feedback_body(6, label=6))[0] == 201
    finally:
        stack.stop_web()
    rows = read_rows(postgres_url)
    assert [r.label for r in rows] == list(range(7))
    [number] = read_number_rows(postgres_url)
    assert (number.number, number.predicted) == ("42", "42")
    # Training reads both: the seven digits, and the number cut into its two (after the digits of its side).
    (train_x, train_y), (hold_x, hold_y) = feedback_split(postgres_url)
    assert sorted(train_y.tolist() + hold_y.tolist()) == sorted([*range(7), 4, 2])
    assert len(train_x) + len(hold_x) == 9
    digits_held = hold_y.tolist()[:-2] if held_out(number.png_sha256) else hold_y.tolist()
    assert [label for _, label in holdout_drawings(postgres_url)] == digits_held


async def test_the_same_feedback_again_gets_its_first_id_on_postgresql(postgres):
    """A retry of feedback whose row was stored (web/feedback_store.py _stored_before): its first id, for a
    digit and for a number with no answer (NULL), one row each; other feedback on the ticket is refused."""
    store = FeedbackStore(postgres("retries"))
    png = bytes(range(256))
    digit = {"version": "1.0", "label": 4, "predicted": 9, "png": png, "input_28x28": bytes(784)}
    number = {"version": "1.0", "number": "42", "predicted": None, "png": png}
    for add, sent, other in ((store.add, digit, {"label": 5}), (store.add_number, number, {"number": "43"})):
        first = await add(**sent, ticket_id="t-1")
        assert await add(**sent, ticket_id="t-1") == first
        with pytest.raises(TicketReused):
            await add(**sent | other, ticket_id="t-1")
    assert [(r.label, r.ticket_id) for r in await store.rows()] == [(4, "t-1")]
    assert [(r.number, r.predicted) for r in await store.number_rows()] == [("42", None)]
    await store.close()


async def test_number_feedback_on_postgresql_migrates_keeps_digits_and_takes_a_ticket_once(postgres):
    """Migration 4 on a PostgreSQL database of schema 3: the number table with its UNIQUE ticket id, rows
    of both tables side by side, 100 numbers written at once, NULLs (no answer, no ticket) kept."""
    url = postgres("numbers")
    old = FeedbackStore(url)
    async with old.engine.begin() as conn:
        await conn.run_sync(at_schema_3)
    await old.close()
    store = FeedbackStore(
        url, deadline=False
    )  # 100 writes at once: more than a web pod's pool serves in time
    await store.open()
    png = bytes(range(256)) * 8

    async def one(i: int) -> int:
        number = f"{i:04d}"  # leading zeros: kept as text
        predicted = None if i % 10 == 0 else number
        ticket = None if i % 25 == 0 else f"ticket-{i}"
        return await store.add_number(
            version="1.0", number=number, predicted=predicted, png=png, ticket_id=ticket
        )

    ids = await asyncio.gather(*(one(i) for i in range(100)))
    assert len(set(ids)) == 100
    with pytest.raises(TicketReused):
        await store.add_number(version="1.0", number="1", predicted="7", png=png, ticket_id="ticket-1")
    # A digit row may carry the same ticket id: the two tables are apart (and the tickets sign different answers).
    await store.add(
        version="1.0", label=1, predicted=7, png=png, input_28x28=bytes(784), ticket_id="ticket-1"
    )
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("SELECT version FROM schema_version"))).scalar_one() == SCHEMA_VERSION
    rows, digit_rows = await store.number_rows(), await store.rows()
    await store.close()
    rows.sort(key=lambda r: r.number)  # written at once: ids in any order
    assert [r.number for r in rows] == [f"{i:04d}" for i in range(100)]
    assert [r.predicted for r in rows][:11] == [None, *(f"{i:04d}" for i in range(1, 10)), None]
    assert sum(r.ticket_id is None for r in rows) == 4 and all(r.png == png for r in rows)
    assert [(r.label, r.ticket_id) for r in digit_rows] == [(3, "old"), (1, "ticket-1")]


@pytest.mark.stack
def test_feedback_answers_503_in_time_while_postgresql_does_not_answer_and_recovers(postgres, tmp_path):
    """Every process of the server stopped (SIGSTOP): the kernel still accepts connections, nothing answers
    on them nor on the pooled one. A feedback request gets its 503 JSON within FEEDBACK_DEADLINE (2 s; the
    bound here leaves the busy machine half a second), one at a time and twelve at once (more than a web
    pod's pool); /healthz answers meanwhile; once the server runs again feedback is stored, no restart."""
    url = postgres("stopped")
    stack = Stack(tmp_path / "run", tmp_path / "model_store")
    stack.run_dir.mkdir()
    stack.start_web(FEEDBACK_DB=url)

    bodies = [feedback_body(i, label=i % 10) for i in range(16)]  # made before the clock starts

    def timed(i: int) -> tuple[int, dict, float]:
        body = bodies[i] if i < len(bodies) else feedback_body(i, label=i % 10)
        started = time.monotonic()
        status, answer = post_feedback(stack.web_url, body)
        return status, answer, time.monotonic() - started

    stopped = []
    try:
        assert timed(0)[0] == 201  # the pool holds a connection now
        stopped = postgres.pids()
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        alone = [timed(i) for i in range(1, 4)]  # the pooled connection's ping, then new connections
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(timed, range(4, 16)))
        print(f"\n503 after {', '.join(f'{took:.2f}' for *_, took in alone + together)} s")
        for status, answer, took in alone + together:
            assert status == 503 and "try again" in answer["error"], answer
            assert took < FEEDBACK_DEADLINE + 0.5
        assert get_json(stack.web_url + "/healthz") == (200, {"status": "alive"})
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    try:
        deadline = time.monotonic() + 30
        while (status := timed(16)[0]) != 201 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 201
    finally:
        stack.stop_web()
    assert [row.label for row in read_rows(url)] == [0, 6]  # what was refused stored nothing


async def test_writers_memories_on_postgresql_are_bounded_kept_apart_and_forgotten(postgres):
    """web/feedback_store.py writer_memory (docs/writers.md) as the cluster keeps it."""
    store = FeedbackStore(postgres("memories"))
    for i in range(MEMORY_SIZE + 3):
        await store.remember("a" * 64, i % 10, bytes([i % 256]) * 784)
    await store.remember("b" * 64, 7, bytes(784))
    ids = await store.memory_ids("a" * 64)
    assert len(ids) == MEMORY_SIZE and list(ids) == sorted(ids)  # the oldest 3 went
    kept = await store.memory("a" * 64, ids)
    assert kept[ids[0]] == (3, bytes([3]) * 784)
    assert await store.memory("b" * 64, ids) == {}  # another writer's ids give nothing
    assert await store.forget("a" * 64) == MEMORY_SIZE
    assert await store.memory_ids("a" * 64) == () and len(await store.memory_ids("b" * 64)) == 1
    await store.close()
