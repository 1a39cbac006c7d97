"""POST /api/feedback in-process (pytest-aiohttp's real server on loopback) writing a real SQLite file:
what a row holds, what is refused and stores nothing, the counters, and the schema's version."""

import base64
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from handler.decode import decode
from handler.errors import InputError
from handler.ink import ink_map
from handler.mnist_form import preprocess
from tests.drawings import animated_gif, data_url, drawing, png
from tests.stack import ROOT
from train.feedback_data import to_28x28
from web.app import Config, init_app
from web.feedback import STORED_BYTES, STORED_SIDE, stored_drawing
from web.feedback_store import NOT_A_DIGIT, SCHEMA_VERSION
from web.tickets import MIN_KEY_LENGTH, TicketError, Tickets, drawing_hash

COLUMNS = {
    "id",
    "created_utc",
    "version",
    "label",
    "predicted",
    "png",
    "png_sha256",
    "input_28x28",
    "ticket_id",
}
TICKETS = Config().tickets  # every app here has the default key: tickets minted as /predict would


def ticket(image, version="1.0", predicted=1) -> str:
    """A ticket as /predict gives one for this answer ("unsignable" when the image holds no image bytes:
    such feedback is refused for its image first)."""
    predicted = NOT_A_DIGIT if predicted == "not_a_digit" else predicted
    try:
        return TICKETS.issue(drawing_hash(image), version, predicted)
    except (InputError, TypeError):
        return "unsignable"


def write_snapshot(run_dir, versions):
    """A TorchServe config snapshot naming the registered versions (what web/registry.py reads)."""
    models = {"mnist": {v: {"defaultVersion": i == 0} for i, v in enumerate(versions)}}
    (run_dir / "logs" / "config").mkdir(parents=True)
    snapshot = json.dumps({"name": "test", "modelCount": 1, "models": models})
    (run_dir / "logs" / "config" / "20260101000000000-snapshot.cfg").write_text(
        f"model_snapshot={snapshot}\n"
    )


def stored(db) -> list[dict]:
    """The rows as SQLite itself has them (not through our store)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM feedback ORDER BY id")]


def counted(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def body(image: bytes | str = None, label=7, predicted=1, version="1.0", **extra) -> bytes:
    image = drawing(0) if image is None else image
    doc = {"image": image.decode() if isinstance(image, bytes) else image, "label": label}
    extra.setdefault("ticket", ticket(doc["image"], version, predicted))
    doc.update(predicted=predicted, version=version, **extra)
    return json.dumps(doc).encode()


JSON = {"Content-Type": "application/json"}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "feedback.sqlite3"


@pytest.fixture
async def client(aiohttp_client, tmp_path, db):
    write_snapshot(tmp_path, ["1.0", "2.0"])
    # No TorchServe: feedback needs none (and /predict is not used here).
    config = Config(inference_url="http://127.0.0.1:9", run_dir=tmp_path, feedback_db=str(db))
    return await aiohttp_client(init_app(config))


async def test_feedback_is_stored_with_the_drawing_and_what_the_model_saw(client, db):
    before = datetime.now(UTC).replace(tzinfo=None)
    image = drawing(3)
    response = await client.post(
        "/api/feedback",
        data=body(image, label=4, predicted=9, version="2.0"),
        headers={"Content-Type": "application/json", "Cookie": "session=abc", "X-Forwarded-For": "10.1.2.3"},
    )
    assert response.status == 201, await response.text()
    assert await response.json() == {"id": 1}
    [row] = stored(db)
    assert set(row) == COLUMNS  # no address, cookie or header column
    png_bytes = base64.b64decode(image.split(b",", 1)[1])
    # Not the bytes sent: the ink preprocessing read, a grayscale PNG (web/feedback.py stored_drawing), from
    # which training gets the very 28x28 the model saw; the hash is of the bytes sent.
    assert row["png"] == stored_drawing(ink_map(decode(png_bytes)))
    assert Image.open(io.BytesIO(row["png"])).mode == "L"
    assert row["png_sha256"] == hashlib.sha256(png_bytes).hexdigest()
    seen = (preprocess(png_bytes) * 255).round().astype(np.uint8)
    assert row["input_28x28"] == seen.tobytes() == to_28x28(row["png"]).tobytes()
    assert (row["label"], row["predicted"], row["version"]) == (4, 9, "2.0")
    created = datetime.fromisoformat(row["created_utc"])
    assert before <= created <= datetime.now(UTC).replace(tzinfo=None)
    assert b"10.1.2.3" not in json.dumps({k: str(v) for k, v in row.items()}).encode()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


async def test_a_jpeg_drawing_is_kept_as_png(client, db):
    jpeg = Image.open(io.BytesIO(base64.b64decode(drawing(5).split(b",", 1)[1]))).convert("RGB")
    buffer = io.BytesIO()
    jpeg.save(buffer, format="JPEG", quality=95)
    response = await client.post(
        "/api/feedback", data=body(data_url(buffer.getvalue(), "image/jpeg")), headers=JSON
    )
    assert response.status == 201
    [row] = stored(db)
    assert row["png"].startswith(b"\x89PNG\r\n\x1a\n")


async def test_counters_by_version_and_right_or_wrong(client):
    def snapshot():
        return {
            (v, verdict): counted("feedback_total", version=v, verdict=verdict)
            for v in ("1.0", "2.0", "unregistered")
            for verdict in ("right", "wrong")
        }

    before = snapshot()
    posts = [("1.0", 3, 3), ("1.0", 3, 5), ("1.0", 8, 5), ("2.0", 2, 2), ("9.9", 1, 7)]
    for version, label, predicted in posts:
        response = await client.post(
            "/api/feedback", data=body(label=label, predicted=predicted, version=version), headers=JSON
        )
        assert response.status == 201
    after = snapshot()
    grown = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    # A version TorchServe never registered (9.9) is counted, under one label for all such versions.
    assert grown == {
        ("1.0", "right"): 1,
        ("1.0", "wrong"): 2,
        ("2.0", "right"): 1,
        ("unregistered", "wrong"): 1,
    }


BLANK = data_url(png(Image.new("L", (280, 280), 255)))
BAD = {
    "not JSON": (b"data:image/png;base64,iVBOR", 400),
    "JSON sent as text/plain": (body(), 415),
    "JSON, not an object": (b"[1, 2]", 400),
    "label 10": (body(label=10), 400),
    "label -1": (body(label=-1), 400),
    "label as text": (body(label="7"), 400),
    "label true": (body(label=True), 400),
    "label 3.0": (body(label=3.0), 400),
    "no label": (json.dumps({"image": drawing(0).decode(), "predicted": 1, "version": "1.0"}).encode(), 400),
    "predicted 12": (body(predicted=12), 400),
    "no version": (json.dumps({"image": drawing(0).decode(), "label": 1, "predicted": 1}).encode(), 400),
    "version a path": (body(version="../../etc"), 400),
    "no image": (json.dumps({"label": 1, "predicted": 1, "version": "1.0", "ticket": "x"}).encode(), 400),
    "no ticket": (
        json.dumps({"image": drawing(0).decode(), "label": 1, "predicted": 1, "version": "1.0"}).encode(),
        400,
    ),
    "ticket not text": (body(ticket=12), 400),
    "empty image": (body(image=""), 400),
    "image not base64": (body(image="no*base64!"), 415),  # as /predict: text that is not an image
    "image of text": (body(image="data:text/plain;base64,aGVsbG8="), 415),
    "image not an image": (body(image=data_url(b"GIF89a but not really")), 415),
    "image too small": (body(image=data_url(png(Image.new("L", (4, 4))))), 400),
    "image animated": (body(image=data_url(animated_gif(), "image/gif")), 400),
    "blank canvas": (body(image=BLANK), 422),
    "over 1 MiB": (body(padding="x" * (1024 * 1024)), 413),
    "JSON nested deeper than the parser goes": (b"[" * 5000 + b"]" * 5000, 400),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_feedback_is_a_4xx_json_error_and_stores_nothing(client, db, case):
    payload, status = BAD[case]
    refused = counted("feedback_refused_total", reason="bad_request")
    content_type = "text/plain" if case == "JSON sent as text/plain" else "application/json"
    response = await client.post("/api/feedback", data=payload, headers={"Content-Type": content_type})
    assert response.status == status, await response.text()
    assert isinstance((await response.json())["error"], str)
    assert stored(db) == []
    if status != 413:  # aiohttp refuses an oversize body before the view runs
        assert counted("feedback_refused_total", reason="bad_request") == refused + 1
    # The next good feedback is stored: a bad one broke nothing.
    assert (await client.post("/api/feedback", data=body(), headers=JSON)).status == 201
    assert len(stored(db)) == 1


async def test_a_database_from_a_newer_schema_is_refused_and_left_alone(aiohttp_client, tmp_path, db):
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    config = Config(inference_url="http://127.0.0.1:9", run_dir=tmp_path, feedback_db=str(db))
    client = await aiohttp_client(init_app(config))
    assert (await client.get("/api/models")).status == 200  # the app is up
    response = await client.post("/api/feedback", data=body(), headers=JSON)
    assert response.status == 503 and "error" in await response.json()
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"schema_version"}  # no migration was attempted on it


async def test_a_database_directory_that_cannot_be_made_is_a_503_not_a_crash(aiohttp_client, tmp_path):
    """A read-only filesystem (a container's root) or a path through a file: the app starts anyway."""
    (tmp_path / "a-file").write_text("")
    config = Config(
        inference_url="http://127.0.0.1:9",
        run_dir=tmp_path,
        feedback_db=str(tmp_path / "a-file" / "f.sqlite3"),
    )
    client = await aiohttp_client(init_app(config))
    assert (await client.get("/healthz")).status == 200
    response = await client.post("/api/feedback", data=body(), headers=JSON)
    assert response.status == 503 and "error" in await response.json()


async def test_a_database_file_deleted_under_the_app_is_made_anew_not_written_blind(client, db):
    assert (await client.post("/api/feedback", data=body(label=1), headers=JSON)).status == 201
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)  # an operator cleans up (or a volume is swapped)
    response = await client.post("/api/feedback", data=body(label=2), headers=JSON)
    assert response.status == 201
    # The row is in the file that exists now, not in the deleted one an open connection still held.
    assert [row["label"] for row in stored(db)] == [2]


def test_a_ticket_binds_image_version_answer_and_time():
    """Unit-level: the signature covers each field; a changed one or another key is refused."""
    image = drawing(0).decode()
    good = TICKETS.issue(drawing_hash(image), "1.0", 1)
    assert TICKETS.check(good, drawing_hash(image), "1.0", 1) == good.split(".")[1]
    refused = [
        (good, drawing_hash(drawing(1).decode()), "1.0", 1),  # another drawing
        (good, drawing_hash(image), "2.0", 1),  # another version
        (good, drawing_hash(image), "1.0", 7),  # another answer
        (Tickets().issue(drawing_hash(image), "1.0", 1), drawing_hash(image), "1.0", 1),  # another key
    ]
    for args in refused:
        with pytest.raises(TicketError):
            TICKETS.check(*args)
    later = Tickets(TICKETS.key, max_age=60, clock=lambda: time.time() + 61)
    with pytest.raises(TicketError, match="expired"):
        later.check(good, drawing_hash(image), "1.0", 1)


def forged(image) -> str:
    issued, nonce, mac = ticket(image).split(".")
    return f"{issued}.{nonce}.{'0' * 64 if mac != '0' * 64 else '1' * 64}"


def expired(image) -> str:
    old = Tickets(TICKETS.key, clock=lambda: time.time() - TICKETS.max_age - 5)
    return old.issue(drawing_hash(image), "1.0", 1)


TICKET_CASES = {
    "forged": forged,
    "malformed": lambda image: "not-a-ticket",
    "not ASCII": lambda image: "1700000000.n\u00f6nce.m\u00e4c",
    "for another drawing": lambda image: ticket(drawing(1).decode()),
    "for another answer": lambda image: ticket(image, predicted=2),
    "for another version": lambda image: ticket(image, version="2.0"),
    "expired": expired,
    "from another key (a restarted process without FEEDBACK_TICKET_KEY)": lambda image: Tickets().issue(
        drawing_hash(image), "1.0", 1
    ),
}


@pytest.mark.parametrize("case", list(TICKET_CASES))
async def test_a_bad_ticket_is_403_and_stores_nothing(client, db, case):
    image = drawing(0).decode()
    refused = counted("feedback_refused_total", reason="ticket")
    response = await client.post(
        "/api/feedback", data=body(image, ticket=TICKET_CASES[case](image)), headers=JSON
    )
    assert response.status == 403, await response.text()
    assert "ticket" in (await response.json())["error"]
    assert stored(db) == []
    assert counted("feedback_refused_total", reason="ticket") == refused + 1


async def test_a_ticket_is_used_once(client, db):
    image = drawing(0).decode()
    once = ticket(image)
    first = await client.post("/api/feedback", data=body(image, label=4, ticket=once), headers=JSON)
    assert first.status == 201
    again = await client.post("/api/feedback", data=body(image, label=5, ticket=once), headers=JSON)
    assert again.status == 409 and "used" in (await again.json())["error"]
    rows = stored(db)
    assert [row["label"] for row in rows] == [4]
    assert rows[0]["ticket_id"] == once.split(".")[1]


async def test_the_same_feedback_again_is_answered_with_its_first_id_and_stored_once(client, db):
    """A retry (after a 503 whose row was committed, its acknowledgement late): the same ticket, drawing,
    version and answers get the first row's id; other feedback on that ticket is still 409."""
    image = drawing(0).decode()
    once = ticket(image)
    first = await client.post("/api/feedback", data=body(image, label=4, ticket=once), headers=JSON)
    again = await client.post("/api/feedback", data=body(image, label=4, ticket=once), headers=JSON)
    assert first.status == again.status == 201
    assert (await again.json())["id"] == (await first.json())["id"]
    other = await client.post("/api/feedback", data=body(image, label=5, ticket=once), headers=JSON)
    assert other.status == 409
    assert [row["label"] for row in stored(db)] == [4]


async def test_a_ticket_used_on_one_replica_is_refused_on_another(aiohttp_client, tmp_path, db):
    """Two apps (replicas) on one database with one key (FEEDBACK_TICKET_KEY): the UNIQUE ticket id holds."""
    write_snapshot(tmp_path, ["1.0"])
    key = Tickets(b"shared secret")
    replicas = [
        await aiohttp_client(
            init_app(
                Config(inference_url="http://127.0.0.1:9", run_dir=tmp_path, feedback_db=str(db), tickets=key)
            )
        )
        for _ in range(2)
    ]
    image = drawing(0).decode()
    once = key.issue(drawing_hash(image), "1.0", 1)
    assert (
        await replicas[0].post("/api/feedback", data=body(image, ticket=once), headers=JSON)
    ).status == 201
    assert (
        await replicas[1].post("/api/feedback", data=body(image, label=3, ticket=once), headers=JSON)
    ).status == 409
    assert len(stored(db)) == 1


async def test_not_a_digit_is_a_label_of_its_own_both_ways(client, db):
    """The page's "Right, not a digit" and "it is a digit: 7" on a drawing answered "not a digit": stored as
    label 10 (confirmed negative) and label 7 with predicted 10 (a corrected rejection)."""
    for label in ("not_a_digit", 7):
        response = await client.post(
            "/api/feedback", data=body(label=label, predicted="not_a_digit"), headers=JSON
        )
        assert response.status == 201, await response.text()
    assert [(row["label"], row["predicted"]) for row in stored(db)] == [(10, 10), (7, 10)]
    with sqlite3.connect(db) as conn:
        assert dict(conn.execute("SELECT label, name FROM label_names"))[10] == "not_a_digit"
    bad = await client.post("/api/feedback", data=body(label="not a digit"), headers=JSON)
    assert bad.status == 400 and "not_a_digit" in (await bad.json())["error"]


async def test_a_database_of_schema_1_is_migrated_and_keeps_its_rows(aiohttp_client, tmp_path, db):
    """A database written before "not a digit" existed (schema 1: the feedback table alone)."""
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created_utc DATETIME NOT NULL, "
            "version VARCHAR(64) NOT NULL, label SMALLINT NOT NULL, predicted SMALLINT NOT NULL, "
            "png BLOB NOT NULL, png_sha256 VARCHAR(64) NOT NULL, input_28x28 BLOB NOT NULL)"
        )
        conn.execute(
            "INSERT INTO feedback VALUES (1, '2026-01-01 00:00:00', '1.0', 3, 5, x'00', 'ab', x'00')"
        )
    write_snapshot(tmp_path, ["1.0"])
    config = Config(inference_url="http://127.0.0.1:9", run_dir=tmp_path, feedback_db=str(db))
    client = await aiohttp_client(init_app(config))
    once = ticket(drawing(0).decode(), predicted=4)
    response = await client.post(
        "/api/feedback", data=body(label="not_a_digit", predicted=4, ticket=once), headers=JSON
    )
    assert response.status == 201, await response.text()
    # The ticket column came with migration 3, UNIQUE: the same ticket again is refused.
    again = await client.post("/api/feedback", data=body(label=4, predicted=4, ticket=once), headers=JSON)
    assert again.status == 409
    rows = [(row["label"], row["predicted"], row["ticket_id"]) for row in stored(db)]
    assert rows == [(3, 5, None), (10, 4, once.split(".")[1])]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(5,)]
        assert conn.execute("SELECT count(*) FROM label_names").fetchone() == (11,)
        # ...and migration 4's table for feedback on numbers (tests/test_feedback_numbers.py), empty.
        assert conn.execute("SELECT count(*) FROM number_feedback").fetchone() == (0,)


async def test_a_750_kb_body_is_stored_within_the_bound(client, db):
    """A drawing as large as a client may send (a digit on an 800x800 canvas, MAX_PIXELS, under grey noise
    no PNG compresses: a ~560 KB PNG, a ~750 KB body) is kept as its ink within STORED_BYTES; plain
    noise, the worst case for a PNG, is halved until it fits too."""
    rng = np.random.default_rng(0)
    digit = Image.open(io.BytesIO(base64.b64decode(drawing(4).split(b",", 1)[1]))).convert("L")
    canvas = (
        np.asarray(digit.resize((800, 800))).astype(np.int16) // 2 + 64 + rng.integers(-44, 45, (800, 800))
    )
    big = png(Image.fromarray(canvas.astype(np.uint8)))
    request = body(data_url(big), label=4, predicted=4)
    assert 700_000 < len(request) < 1024 * 1024
    response = await client.post("/api/feedback", data=request, headers=JSON)
    assert response.status == 201, await response.text()
    [row] = stored(db)
    assert len(row["png"]) <= STORED_BYTES and max(Image.open(io.BytesIO(row["png"])).size) <= STORED_SIDE
    assert row["png_sha256"] == hashlib.sha256(big).hexdigest()
    print(f"\n{len(request)} byte body -> {len(row['png'])} byte drawing kept")
    noise = rng.integers(0, 256, (800, 800), dtype=np.uint8)
    assert len(stored_drawing(noise)) <= STORED_BYTES
    assert len(stored_drawing(np.zeros((1, 4000), np.uint8))) <= STORED_BYTES  # a strip past STORED_SIDE


@pytest.mark.parametrize(
    "key, says",
    [
        ("replace-me-with-a-long-random-hex-string", "placeholder"),  # what deploy/ once shipped
        ("0123456789abcdef", "too short"),
        ("", "unset"),
    ],
)
def test_in_cluster_mode_the_web_app_refuses_to_start_on_a_placeholder_or_short_key(key, says):
    """Cluster mode: FEEDBACK_DB names a database server. The real web app process exits at once, non-zero,
    saying why; with a SQLite file (one process, local) the same key is its own business."""
    env = {
        **os.environ,
        "FEEDBACK_DB": "postgresql://feedback:x@127.0.0.1:9/feedback",
        "FEEDBACK_TICKET_KEY": key,
        "WEB_PORT": "9",  # never reached: it must not start
    }
    started = subprocess.run(
        [sys.executable, "-m", "web.app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode != 0
    assert "error: FEEDBACK_TICKET_KEY" in started.stderr and says in started.stderr, started.stderr
    assert "openssl rand -hex 32" in started.stderr and "Traceback" not in started.stderr
    assert "Digit recognizer:" not in started.stdout
    assert len("0123456789abcdef") < MIN_KEY_LENGTH


def test_outside_cluster_mode_any_key_or_none_will_do(monkeypatch):
    for db in ("data/feedback.sqlite3", "sqlite+aiosqlite:///data/x.sqlite3"):
        monkeypatch.setenv("FEEDBACK_DB", db)
        monkeypatch.setenv("FEEDBACK_TICKET_KEY", "short")
        assert Tickets.from_env().key == b"short"
    monkeypatch.setenv("FEEDBACK_DB", "postgresql://feedback:x@postgres:5432/feedback")
    monkeypatch.setenv("FEEDBACK_TICKET_KEY", "f" * MIN_KEY_LENGTH)
    assert Tickets.from_env().key == b"f" * MIN_KEY_LENGTH
