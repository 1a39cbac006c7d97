"""The same feedback code on a real PostgreSQL server (Debian's `postgresql` package): the test starts a
throwaway cluster of its own in a temporary directory, on 127.0.0.1, as the unprivileged `postgres` user
(PostgreSQL refuses to run as root), and the web app takes its URL as FEEDBACK_DB."""

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
from sqlalchemy import text

from tests.drawings import feedback_body
from tests.stack import Stack, post_feedback
from train.feedback_data import feedback_split, holdout_drawings
from web.feedback_store import SCHEMA_VERSION, FeedbackStore, read_rows


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

    try:
        yield database
    finally:
        stop = [f"{bin_dir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]
        subprocess.run(as_postgres_user(stop), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


async def test_the_store_on_postgresql_loses_nothing_under_concurrency(postgres):
    url = postgres("concurrency")
    store = FeedbackStore(url)
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
def test_the_web_app_stores_feedback_on_postgresql_and_training_reads_it(postgres, tmp_path):
    postgres_url = postgres("web")
    stack = Stack(tmp_path / "run", tmp_path / "model_store")
    stack.run_dir.mkdir()
    try:
        stack.start_web(FEEDBACK_DB=postgres_url)
        for i in range(6):
            status, answer = post_feedback(stack.web_url, feedback_body(i, label=i))
            assert status == 201, answer
        stack.stop_web()
        stack.start_web(FEEDBACK_DB=postgres_url)
        assert post_feedback(stack.web_url, feedback_body(6, label=6))[0] == 201
    finally:
        stack.stop_web()
    rows = read_rows(postgres_url)
    assert [r.label for r in rows] == list(range(7))
    (train_x, train_y), (hold_x, hold_y) = feedback_split(postgres_url)
    assert sorted(train_y.tolist() + hold_y.tolist()) == list(range(7)) and len(train_x) + len(hold_x) == 7
    assert [label for _, label in holdout_drawings(postgres_url)] == hold_y.tolist()
