"""The feedback database: one table of drawings people corrected or confirmed, behind SQLAlchemy's asyncio
engine, so the same code writes a SQLite file (aiosqlite, the default) or a PostgreSQL server (asyncpg).

    FEEDBACK_DB=data/feedback.sqlite3                              # a path: SQLite, WAL mode
    FEEDBACK_DB=postgresql://user:password@host:5432/feedback      # a URL: any SQLAlchemy async URL

The web app writes rows (web/feedback.py); training and `make feedback-export` read them
(train/feedback_data.py). The schema is versioned in table schema_version: MIGRATIONS[i] takes a database
from version i to i + 1, and open() applies whichever are missing, in one transaction.

Two tables: `feedback`, one digit per row (/predict's answers), and `number_feedback`, one number per row
(/read's answers: the number meant and the number answered, as digit strings; schema version 4). A third,
`writer_memory` (schema version 5), keeps writers' memories (web/writers.py, docs/writers.md).
"""

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from handler.answers import NOT_A_DIGIT

DEFAULT_DB = "data/feedback.sqlite3"
# How long a write waits for a lock another process holds before the client gets a 503: long enough to ride
# out a checkpoint or a reader, short enough that the page is not left waiting.
LOCK_TIMEOUT = 3.0
# PostgreSQL: a write is stored or refused (503) within FEEDBACK_DEADLINE seconds, whatever the server does
# (docs/database.md, "Timeouts"). Each step has a timeout of its own, and a server that stops answering
# (hung, stopped, cut off) costs a write at most three in a row: a wait for a pooled connection, that
# connection's ping, a new connection. STATEMENT_TIMEOUT is the server's own: it cancels a statement that
# waits (a lock held by a restore) before the client gives up on it, and the connection stays usable.
FEEDBACK_DEADLINE = 2.0
POOL_TIMEOUT = 0.5
CONNECT_TIMEOUT = 0.6  # TCP, startup and password exchange
COMMAND_TIMEOUT = 0.6  # each statement, as the client waits for it
STATEMENT_TIMEOUT = 0.5
# Connections per web process, POOL_SIZE kept and MAX_OVERFLOW more under a burst: times the pods at the
# HPA's maximum (and a rollout's surge) they must fit the server's max_connections with room to spare
# (docs/database.md, "Connections"; tests/test_manifests.py checks the arithmetic).
POOL_SIZE = 2
MAX_OVERFLOW = 2

metadata = MetaData()
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))


def _v1_columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_utc", DateTime, nullable=False),  # naive, always UTC (SQLite keeps no zone)
        Column("version", String(64), nullable=False),  # the model version that answered
        Column("label", SmallInteger, nullable=False),  # the digit the person drew; 10: not a digit
        Column("predicted", SmallInteger, nullable=False),  # the digit answered; 10: "not a digit"
        # The drawing's ink, a grayscale PNG of bounded size (web/feedback.py stored_drawing); rows from
        # before it hold the bytes the page sent to /predict.
        Column("png", LargeBinary, nullable=False),
        # hex, of the image bytes as sent; decides the hold-out (train/feedback_data.py)
        Column("png_sha256", String(64), nullable=False),
        # 784 bytes, row-major, 255 = ink: what the model saw
        Column("input_28x28", LargeBinary, nullable=False),
    ]


feedback = Table(
    "feedback",
    metadata,
    *_v1_columns(),
    # The feedback ticket's id (web/tickets.py): UNIQUE, so a ticket is used once whichever replica
    # takes it. NULL in rows from before tickets, and in rows written by scripts (scripts/pen_feedback.py).
    Column("ticket_id", String(64), nullable=True),
)


def _add_ticket_id(conn) -> None:
    conn.execute(text("ALTER TABLE feedback ADD COLUMN ticket_id VARCHAR(64)"))
    conn.execute(text("CREATE UNIQUE INDEX feedback_ticket_id ON feedback (ticket_id)"))


# MIGRATIONS[i] brings the schema from version i to i + 1. Append, never edit: a database in the field
# may be at any version. Each creates what it did when it was written (version 1: the table as first
# defined, before ticket_id), so a new database goes through the same steps as an old one.
# NOT_A_DIGIT (handler/answers.py), label and predicted: "not a digit" (docs/not-a-digit.md), the model's 11th output.
# What each stored label means, in the database itself, for whoever reads the rows without this code.
label_names = Table(
    "label_names",
    metadata,
    Column("label", SmallInteger, primary_key=True),
    Column("name", String(16), nullable=False),
)


def _name_the_labels(conn) -> None:
    label_names.create(conn)
    names = [{"label": d, "name": str(d)} for d in range(10)] + [
        {"label": NOT_A_DIGIT, "name": "not_a_digit"}
    ]
    conn.execute(label_names.insert(), names)


NOT_A_NUMBER = "not_a_digit"  # number_feedback.number: what was drawn is not a number ("right, not a digit")


def _number_columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_utc", DateTime, nullable=False),  # naive, always UTC
        Column("version", String(64), nullable=False),  # the model version that answered
        # The number the person meant, 1-16 digits as text (leading zeros kept: a postcode "01234"), or
        # "not_a_digit": what was drawn is not a number (a digit judged "not a digit", confirmed).
        Column("number", String(16), nullable=False),
        # The number /read answered; NULL when it read none (a piece did not look like a digit).
        Column("predicted", String(16), nullable=True),
        Column("png", LargeBinary, nullable=False),  # the drawing's ink, as in `feedback`
        Column("png_sha256", String(64), nullable=False),  # hex, of the bytes sent; decides the hold-out
        Column("ticket_id", String(64), nullable=True),  # the /read ticket's id: UNIQUE, as in `feedback`
    ]


number_feedback = Table("number_feedback", metadata, *_number_columns())


def _add_number_feedback(conn) -> None:
    Table("number_feedback", MetaData(), *_number_columns()).create(conn)
    conn.execute(text("CREATE UNIQUE INDEX number_feedback_ticket_id ON number_feedback (ticket_id)"))


# A writer's memory (web/writers.py, docs/writers.md): the drawings a writer corrected, or confirmed while
# unsure, as the 28x28 the model saw and the label meant; keyed by the SHA-256 of the writer's id (never the
# id itself). At most MEMORY_SIZE per writer (the oldest go), none older than MEMORY_DAYS.
MEMORY_SIZE = 64
MEMORY_DAYS = 90


def _memory_columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("writer", String(64), nullable=False),  # hex SHA-256 of the X-Writer id
        Column("created_utc", DateTime, nullable=False),  # naive, always UTC
        Column("label", SmallInteger, nullable=False),  # 0-9; 10: not a digit
        Column("input_28x28", LargeBinary, nullable=False),  # 784 bytes, 255 = ink: what the model saw
    ]


writer_memory = Table("writer_memory", metadata, *_memory_columns())


def _add_writer_memory(conn) -> None:
    Table("writer_memory", MetaData(), *_memory_columns()).create(conn)
    conn.execute(text("CREATE INDEX writer_memory_writer ON writer_memory (writer, id)"))
    conn.execute(text("CREATE INDEX writer_memory_created ON writer_memory (created_utc)"))


MIGRATIONS = [
    lambda conn: Table("feedback", MetaData(), *_v1_columns()).create(conn),
    _name_the_labels,  # 2: label 10, "not a digit" (issue 26)
    _add_ticket_id,  # 3: feedback tickets (issue 28)
    _add_number_feedback,  # 4: feedback on numbers read by /read (issue 27)
    _add_writer_memory,  # 5: writers' memories (issue 43)
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreUnavailable(Exception):
    """The database cannot be written now (locked, broken, unreachable): the client gets a 503."""


class TicketReused(Exception):
    """A row with this ticket id exists already: the ticket was used (here or on another replica)."""


@dataclass(frozen=True)
class Row:
    id: int
    created_utc: datetime
    version: str
    label: int
    predicted: int
    png: bytes
    png_sha256: str
    input_28x28: bytes
    ticket_id: str | None = None


@dataclass(frozen=True)
class NumberRow:
    id: int
    created_utc: datetime
    version: str
    number: str  # digits, or NOT_A_NUMBER
    predicted: str | None
    png: bytes
    png_sha256: str
    ticket_id: str | None = None


def database_url(value: str) -> str:
    """FEEDBACK_DB as an async SQLAlchemy URL: a plain path is a SQLite file; postgresql:// gets asyncpg."""
    if "://" not in value:
        return f"sqlite+aiosqlite:///{Path(value).resolve()}"
    url = make_url(value)
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    return url.set(drivername=driver.get(url.drivername, url.drivername)).render_as_string(
        hide_password=False
    )


def make_engine(url: str, lock_timeout: float = LOCK_TIMEOUT, deadline: bool = True) -> AsyncEngine:
    """deadline: PostgreSQL's steps bounded as FEEDBACK_DEADLINE needs (the web app); False for readers of
    every row (training, export), which take as long as the rows do."""
    if not url.startswith("sqlite"):
        timeouts = {"timeout": CONNECT_TIMEOUT, "command_timeout": COMMAND_TIMEOUT}
        timeouts["server_settings"] = {"statement_timeout": str(round(STATEMENT_TIMEOUT * 1000))}
        return create_async_engine(
            url,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=POOL_TIMEOUT if deadline else 30.0,
            pool_pre_ping=True,
            connect_args=timeouts if deadline else {"timeout": 30.0},
        )
    # One connection: SQLite has one writer at a time anyway, and queueing in the pool is cheaper than
    # connections spinning on the file lock. A request queued longer than the lock timeout gets a 503.
    engine = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=lock_timeout * 4,
        connect_args={"timeout": lock_timeout},  # sqlite3's busy timeout
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # We issue BEGIN ourselves (below): sqlite3's implicit transactions leave DDL and reads outside one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers (training, export) never block the web app's writes, nor it them.
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the client hears 201, so an acknowledged row survives a power cut.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock at BEGIN, so a transaction never fails halfway on a lock upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _migrate(conn) -> None:
    if conn.dialect.name == "postgresql":  # two web apps starting at once: one migrates, the other waits
        conn.execute(text("SELECT pg_advisory_xact_lock(1414)"))
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(select(schema_version.c.version)).scalar()
    if current is None:
        conn.execute(schema_version.insert().values(version=0))
        current = 0
    if current > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the feedback database has schema {current}; this code knows up to {SCHEMA_VERSION}"
        )
    for step in MIGRATIONS[current:]:
        step(conn)
    conn.execute(schema_version.update().values(version=SCHEMA_VERSION))


class FeedbackStore:
    """Async access to the feedback table. Every database failure surfaces as StoreUnavailable."""

    def __init__(self, db: str = DEFAULT_DB, lock_timeout: float = LOCK_TIMEOUT, deadline: bool = True):
        self.url = database_url(db)
        self.engine = make_engine(self.url, lock_timeout, deadline)
        path = make_url(self.url).database if self.url.startswith("sqlite") else None
        self.path = Path(path) if path and path != ":memory:" else None
        self._inode = None  # of the SQLite file when opened
        self._ready = False
        self._migrating = asyncio.Lock()

    async def open(self) -> None:
        """Create or migrate the schema. Safe to call again; does nothing once it has succeeded."""
        if self._ready and not self._file_replaced():
            return
        async with self._migrating:
            if self._ready and not self._file_replaced():
                return
            if self._ready:  # the file was deleted or replaced under us: let go of the old one
                print(f"feedback database {self.path} was deleted or replaced: opening it anew", flush=True)
                self._ready = False
                await self.engine.dispose()
            try:
                if self.path:  # here, not at start-up: a directory that cannot be made is a 503, not a crash
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                async with self.engine.begin() as conn:
                    await conn.run_sync(_migrate)
                self._inode = self.path.stat().st_ino if self.path else None
            except (SQLAlchemyError, OSError) as e:
                raise StoreUnavailable(f"cannot open the feedback database: {_reason(e)}") from e
            self._ready = True

    def _file_replaced(self) -> bool:
        """An open SQLite connection goes on writing to a deleted file, and every row would be lost with
        it at the next restart: one stat per write notices."""
        if self.path is None:
            return False
        try:
            return self.path.stat().st_ino != self._inode
        except FileNotFoundError:
            return True

    async def close(self) -> None:
        await self.engine.dispose()

    async def add(
        self,
        *,
        version: str,
        label: int,
        predicted: int,
        png: bytes,
        input_28x28: bytes,
        ticket_id: str | None = None,
        png_sha256: str | None = None,
    ) -> int:
        """Store one row (committed before this returns) and give its id; TicketReused if a row has
        this ticket id already for other feedback (the same feedback again gets that row's id:
        _stored_before). png_sha256: of the drawing as sent (default: of png)."""
        values = {"label": label, "predicted": predicted, "input_28x28": input_28x28}
        return await self._insert(
            feedback, version=version, png=png, ticket_id=ticket_id, png_sha256=png_sha256, **values
        )

    async def add_number(
        self,
        *,
        version: str,
        number: str,
        predicted: str | None,
        png: bytes,
        ticket_id: str | None = None,
        png_sha256: str | None = None,
    ) -> int:
        """Store one number's feedback (committed before this returns) and give its id; TicketReused if a
        row of number_feedback has this ticket id already for other feedback (as add())."""
        values = {"number": number, "predicted": predicted}
        return await self._insert(
            number_feedback, version=version, png=png, ticket_id=ticket_id, png_sha256=png_sha256, **values
        )

    async def _insert(
        self, table: Table, *, png: bytes, ticket_id: str | None, png_sha256: str | None, **values
    ) -> int:
        await self.open()  # a database that was broken at start-up may be fine now
        values.update(
            created_utc=datetime.now(UTC).replace(tzinfo=None),
            png=png,
            png_sha256=png_sha256 or hashlib.sha256(png).hexdigest(),
            ticket_id=ticket_id,
        )
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(table.insert().values(**values))
                return result.inserted_primary_key[0]
        except IntegrityError as e:
            if ticket_id is None or "ticket_id" not in str(e.orig):
                raise StoreUnavailable(f"cannot write the feedback database: {_reason(e)}") from e
            stored = await self._stored_before(table, values)
            if stored is None:
                raise TicketReused(ticket_id) from e
            return stored
        except (SQLAlchemyError, OSError) as e:
            raise StoreUnavailable(f"cannot write the feedback database: {_reason(e)}") from e

    async def _stored_before(self, table: Table, values: dict) -> int | None:
        """The id of the row holding this very feedback (its ticket, drawing, version and both answers),
        None when its ticket went to other feedback. A client that got a 503 retries: when the server had
        committed the row and only its acknowledgement came too late (a first fsync behind a disk busy
        with other writes, past COMMAND_TIMEOUT), the retry gets the row's id, as the first try should
        have; a second, different feedback on one answer is still refused."""
        same = [table.c[k] == v for k, v in values.items() if k not in ("created_utc", "png", "input_28x28")]
        try:
            async with self.engine.connect() as conn:
                return (await conn.execute(select(table.c.id).where(*same))).scalar_one_or_none()
        except (SQLAlchemyError, OSError) as e:
            raise StoreUnavailable(f"cannot read the feedback database: {_reason(e)}") from e

    async def remember(self, writer: str, label: int, input_28x28: bytes) -> None:
        """Add a drawing to a writer's memory; the writer's oldest past MEMORY_SIZE, and every writer's
        entries older than MEMORY_DAYS, go in the same transaction."""
        await self.open()
        now = datetime.now(UTC).replace(tzinfo=None)
        row = {"writer": writer, "created_utc": now, "label": label, "input_28x28": input_28x28}
        mine = writer_memory.c.writer == writer
        try:
            async with self.engine.begin() as conn:
                await conn.execute(writer_memory.insert().values(**row))
                await conn.execute(writer_memory.delete().where(writer_memory.c.created_utc < _expired(now)))
                kept = select(writer_memory.c.id).where(mine).order_by(writer_memory.c.id.desc())
                oldest_kept = (await conn.execute(kept.offset(MEMORY_SIZE - 1).limit(1))).scalar()
                if oldest_kept is not None:
                    await conn.execute(writer_memory.delete().where(mine, writer_memory.c.id < oldest_kept))
        except (SQLAlchemyError, OSError) as e:
            raise StoreUnavailable(f"cannot write the feedback database: {_reason(e)}") from e

    async def memory_ids(self, writer: str) -> tuple[int, ...]:
        """The ids of a writer's memory not yet expired, oldest first: one indexed query."""
        await self.open()
        now = datetime.now(UTC).replace(tzinfo=None)
        query = select(writer_memory.c.id).where(
            writer_memory.c.writer == writer, writer_memory.c.created_utc >= _expired(now)
        )
        try:
            async with self.engine.connect() as conn:
                return tuple((await conn.execute(query.order_by(writer_memory.c.id))).scalars())
        except (SQLAlchemyError, OSError) as e:
            raise StoreUnavailable(f"cannot read the feedback database: {_reason(e)}") from e

    async def memory(self, writer: str, ids) -> dict[int, tuple[int, bytes]]:
        """id -> (label, input_28x28) of those of `ids` that are the writer's."""
        await self.open()
        columns = (writer_memory.c.id, writer_memory.c.label, writer_memory.c.input_28x28)
        query = select(*columns).where(writer_memory.c.writer == writer, writer_memory.c.id.in_(list(ids)))
        try:
            async with self.engine.connect() as conn:
                return {row.id: (row.label, row.input_28x28) for row in await conn.execute(query)}
        except (SQLAlchemyError, OSError) as e:
            raise StoreUnavailable(f"cannot read the feedback database: {_reason(e)}") from e

    async def forget(self, writer: str) -> int:
        """Delete a writer's memory; how many drawings it held."""
        await self.open()
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(writer_memory.delete().where(writer_memory.c.writer == writer))
                return result.rowcount
        except (SQLAlchemyError, OSError) as e:
            raise StoreUnavailable(f"cannot write the feedback database: {_reason(e)}") from e

    async def count(self) -> int:
        await self.open()
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(feedback))).scalar_one()

    async def rows(self) -> list[Row]:
        """Every row, oldest first."""
        await self.open()
        async with self.engine.connect() as conn:
            result = await conn.execute(select(feedback).order_by(feedback.c.id))
            return [Row(**row._mapping) for row in result]

    async def number_rows(self) -> list[NumberRow]:
        """Every row of number feedback, oldest first."""
        await self.open()
        async with self.engine.connect() as conn:
            result = await conn.execute(select(number_feedback).order_by(number_feedback.c.id))
            return [NumberRow(**row._mapping) for row in result]


def _expired(now: datetime) -> datetime:
    return now - timedelta(days=MEMORY_DAYS)


def _reason(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    return str(original).splitlines()[0] if str(original) else type(original).__name__


def read_rows(db: str) -> list[Row]:
    """Every stored row, for synchronous callers (training, export)."""
    return asyncio.run(_read(db, FeedbackStore.rows))


def read_number_rows(db: str) -> list[NumberRow]:
    """Every stored row of number feedback, for synchronous callers (training)."""
    return asyncio.run(_read(db, FeedbackStore.number_rows))


async def _read(db: str, rows):
    store = FeedbackStore(db, deadline=False)
    try:
        return await rows(store)
    finally:
        await store.close()
