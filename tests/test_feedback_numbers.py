"""POST /api/feedback on a number /read answered, in-process (pytest-aiohttp's real server on loopback) writing
a real SQLite file: a row holds the drawing and both numbers under the /read ticket; a forged, mismatched or
reused ticket and every malformed number are refused and store nothing; the digit form is untouched beside
it; a database of schema 3 is migrated to the number table and keeps its rows."""

import base64
import hashlib
import json
import re
import sqlite3
from datetime import UTC, datetime
from functools import partial

import pytest
from prometheus_client import REGISTRY

from handler.decode import decode
from handler.ink import ink_map
from handler.segment import MAX_DIGITS, number_side, read_candidates
from tests.drawings import drawing
from tests.old_schemas import at_schema_3
from tests.stack import ROOT
from web.app import Config, init_app
from web.feedback import NUMBER_RE, stored_drawing
from web.feedback_store import SCHEMA_VERSION, FeedbackStore
from web.tickets import Tickets, drawing_hash, number_answered

TICKETS = Config().tickets  # every app here has the default key
IMAGE = drawing(3).decode()
JSON = {"Content-Type": "application/json"}


def read_ticket(image: str = IMAGE, number: str | None = "42", version: str = "1.0", key=TICKETS) -> str:
    """The ticket /read gives an answer of `number` (None: a piece was not a digit), signed as web/app.py
    signs it."""
    return key.issue(drawing_hash(image), version, number_answered(200, {"number": number}))


def body(number="42", predicted="42", image: str = IMAGE, version="1.0", **extra) -> bytes:
    doc = {"image": image, "number": number, "predicted": predicted, "version": version}
    doc["ticket"] = extra.pop("ticket", None) or read_ticket(image, predicted, version)
    return json.dumps({**doc, **extra}).encode()


def stored(db, table: str = "number_feedback") -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def counted(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def db(tmp_path):
    return tmp_path / "feedback.sqlite3"


@pytest.fixture
async def client(aiohttp_client, tmp_path, db):
    config = Config(inference_url="http://127.0.0.1:9", run_dir=tmp_path, feedback_db=str(db))
    return await aiohttp_client(init_app(config))


async def test_a_number_is_stored_with_the_drawing_both_numbers_and_the_ticket(client, db):
    before = datetime.now(UTC).replace(tzinfo=None)
    wrong = counted("number_feedback_total", version="unregistered", verdict="wrong")
    once = read_ticket(number="047")
    response = await client.post(
        "/api/feedback", data=body("0427", "047", ticket=once), headers={**JSON, "Cookie": "id=1"}
    )
    assert response.status == 201, await response.text()
    assert await response.json() == {"id": 1}
    [row] = stored(db)
    png = base64.b64decode(IMAGE.split(",", 1)[1])
    assert set(row) == {
        "id",
        "created_utc",
        "version",
        "number",
        "predicted",
        "png",
        "png_sha256",
        "ticket_id",
    }
    assert (row["number"], row["predicted"], row["version"]) == ("0427", "047", "1.0")  # leading zeros kept
    # The drawing's ink as /read cuts it (web/feedback.py stored_drawing); the hash of the bytes as sent.
    assert row["png"] == stored_drawing(ink_map(decode(png), side=number_side))
    assert row["png_sha256"] == drawing_hash(IMAGE) == hashlib.sha256(png).hexdigest()
    assert read_candidates(row["png"]).images.tolist() == read_candidates(png).images.tolist()
    assert row["ticket_id"] == once.split(".")[1]
    assert before <= datetime.fromisoformat(row["created_utc"]) <= datetime.now(UTC).replace(tzinfo=None)
    assert stored(db, "feedback") == []  # the digit table is not touched
    assert counted("number_feedback_total", version="unregistered", verdict="wrong") == wrong + 1


async def test_a_number_not_read_and_not_a_number_are_stored(client, db):
    """predicted null: /read read no number (its ticket signs "null"); "not_a_digit": the person confirms
    that what was drawn is no number."""
    for number in ("7", "not_a_digit"):
        ticket = read_ticket(number=None)
        response = await client.post("/api/feedback", data=body(number, None, ticket=ticket), headers=JSON)
        assert response.status == 201, await response.text()
    assert [(r["number"], r["predicted"]) for r in stored(db)] == [("7", None), ("not_a_digit", None)]


TICKET_CASES = {
    "forged": lambda: read_ticket()[:-64] + "0" * 64,
    "for another number": lambda: read_ticket(number="47"),
    "for no number (null)": lambda: read_ticket(number=None),
    "for another drawing": lambda: read_ticket(drawing(4).decode()),
    "for another version": lambda: read_ticket(version="2.0"),
    "from another key": lambda: read_ticket(key=Tickets()),
    "malformed": lambda: "not-a-ticket",
}


@pytest.mark.parametrize("case", list(TICKET_CASES))
async def test_a_bad_ticket_is_403_and_stores_nothing(client, db, case):
    response = await client.post("/api/feedback", data=body(ticket=TICKET_CASES[case]()), headers=JSON)
    assert response.status == 403, await response.text()
    assert "ticket" in (await response.json())["error"]
    assert stored(db) == []


async def test_a_ticket_takes_one_number(client, db):
    once = read_ticket()
    assert (await client.post("/api/feedback", data=body("42", ticket=once), headers=JSON)).status == 201
    again = await client.post("/api/feedback", data=body("43", ticket=once), headers=JSON)
    assert again.status == 409 and "used" in (await again.json())["error"]
    assert [row["number"] for row in stored(db)] == ["42"]


async def test_the_same_number_feedback_again_is_answered_with_its_first_id(client, db):
    """As for digits, and with a `predicted` of null (a piece not a digit), which is compared as such."""
    once = read_ticket(number=None)
    sent = body("42", predicted=None, ticket=once)
    first = await client.post("/api/feedback", data=sent, headers=JSON)
    again = await client.post("/api/feedback", data=sent, headers=JSON)
    assert first.status == again.status == 201
    assert (await again.json())["id"] == (await first.json())["id"]
    assert (
        await client.post("/api/feedback", data=body("43", None, ticket=once), headers=JSON)
    ).status == 409
    assert [(row["number"], row["predicted"]) for row in stored(db)] == [("42", None)]


BAD_NUMBERS = {
    "empty": {"number": ""},
    "a letter": {"number": "4a"},
    "a space": {"number": "4 2"},
    "a sign": {"number": "-42"},
    "a decimal point": {"number": "4.2"},
    "a newline after it": {"number": "42\n"},
    "digits that are not ASCII": {"number": "٤٢"},  # Arabic-Indic 4 and 2: str.isdigit() says yes
    "full-width digits": {"number": "４２"},
    "17 digits": {"number": "1" * 17},
    "a JSON number": {"number": 42},
    "null": {"number": None},
    "a list": {"number": ["4", "2"]},
    "predicted a JSON number": {"predicted": 42},
    "predicted not a digit": {"predicted": "not_a_digit"},
    "predicted 17 digits": {"predicted": "1" * 17},
    "predicted empty": {"predicted": ""},
    "no predicted": {"predicted": ...},
    "a label as well": {"label": 4},
    "no version": {"version": ...},
    "no image": {"image": ...},
}


@pytest.mark.parametrize("case", list(BAD_NUMBERS))
async def test_a_malformed_number_feedback_is_400_and_stores_nothing(client, db, case):
    doc = json.loads(body())
    for field, value in BAD_NUMBERS[case].items():
        if value is ...:
            del doc[field]
        else:
            doc[field] = value
    refused = counted("feedback_refused_total", reason="bad_request")
    response = await client.post("/api/feedback", data=json.dumps(doc).encode(), headers=JSON)
    assert response.status == 400, await response.text()
    assert isinstance((await response.json())["error"], str)
    assert counted("feedback_refused_total", reason="bad_request") == refused + 1
    assert stored(db) == [] and stored(db, "feedback") == []


async def test_digit_feedback_beside_it_is_as_it_was(client, db):
    """The digit form ({"label", ...} with /predict's ticket) still goes to the digit table, as before."""
    digit_ticket = TICKETS.issue(drawing_hash(IMAGE), "1.0", 1)
    digit = {"image": IMAGE, "label": 7, "predicted": 1, "version": "1.0", "ticket": digit_ticket}
    assert (await client.post("/api/feedback", data=body(), headers=JSON)).status == 201
    response = await client.post("/api/feedback", data=json.dumps(digit).encode(), headers=JSON)
    assert response.status == 201, await response.text()
    [row] = stored(db, "feedback")
    assert (row["label"], row["predicted"], row["ticket_id"]) == (7, 1, digit_ticket.split(".")[1])
    assert len(row["input_28x28"]) == 784
    assert [r["number"] for r in stored(db)] == ["42"]


async def test_a_database_of_schema_3_gets_the_number_table_and_keeps_its_rows(aiohttp_client, tmp_path, db):
    old = FeedbackStore(str(db))
    async with old.engine.begin() as conn:
        await conn.run_sync(partial(at_schema_3, ticket_id="old-ticket"))
    await old.close()
    config = Config(inference_url="http://127.0.0.1:9", run_dir=tmp_path, feedback_db=str(db))
    client = await aiohttp_client(init_app(config))
    assert (await client.post("/api/feedback", data=body(), headers=JSON)).status == 201
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(5,)]
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "number_feedback_ticket_id" in indexes
    assert [(r["label"], r["ticket_id"]) for r in stored(db, "feedback")] == [(3, "old-ticket")]
    assert [r["number"] for r in stored(db)] == ["42"]


def test_the_page_takes_as_many_digits_as_read_reads():
    """One limit: the page's number field and script, and this view, take the handler's MAX_DIGITS."""
    static = ROOT / "web" / "static"
    script = re.search(r"const MAX_DIGITS = (\d+);", (static / "js" / "feedback.js").read_text())
    field = re.search(r'<input id="meant"[^>]*maxlength="(\d+)"', (static / "index.html").read_text())
    assert int(script.group(1)) == int(field.group(1)) == MAX_DIGITS == 16
    assert NUMBER_RE.fullmatch("1" * MAX_DIGITS) and not NUMBER_RE.fullmatch("1" * (MAX_DIGITS + 1))
