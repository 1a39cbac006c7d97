"""Feedback databases as older code left them, for migration tests (SQLite and PostgreSQL alike)."""

from sqlalchemy import text

from web.feedback_store import MIGRATIONS, schema_version


def at_schema_3(conn, ticket_id: str = "old") -> None:
    """A database as the code before issue 27 left it: migrations 1-3 and one digit row with a ticket."""
    schema_version.create(conn)
    conn.execute(schema_version.insert().values(version=3))
    for step in MIGRATIONS[:3]:
        step(conn)
    conn.execute(
        text(
            "INSERT INTO feedback (created_utc, version, label, predicted, png, png_sha256, input_28x28, "
            "ticket_id) VALUES ('2026-11-30 12:00:00', '1.0', 3, 5, :png, 'ab', :seen, :ticket)"
        ),
        {"png": b"\x89PNG", "seen": bytes(784), "ticket": ticket_id},
    )
