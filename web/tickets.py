"""Feedback tickets: /predict's and /read's answers carry one (with_ticket); /api/feedback takes feedback
only with it (Tickets.check).

    ticket = "<issued, unix seconds>.<nonce, 32 hex, then "u" if the answer was "not sure">.<HMAC-SHA256, 64 hex>"
    HMAC(key, "<sha256 of the drawing's image bytes>|<version>|<answer>|<issued>|<nonce>")

The answer is /predict's digit, an int (10 for "not a digit", web/feedback_store.py NOT_A_DIGIT), or
/read's number, a str: its digits, or "null" when a piece was not a digit (number_answered, below).
A number is signed as "number:<it>", so a ticket for a digit never passes for a number: /read's "10" is
not /predict's "not a digit".

The drawing's hash is of the image bytes handler.decode.payload_to_bytes finds in the body, so the
data URL the page posts to /predict and then to /api/feedback hashes the same however it was wrapped
(raw, data URL, JSON, form). The nonce is the ticket's id: stored with the feedback row under a UNIQUE
constraint (web/feedback_store.py), so a ticket is used once across every replica sharing the database.

The key is FEEDBACK_TICKET_KEY (deploy: Secret web-secrets/ticket-key); unset, a random key per process,
so tickets then neither survive a restart nor work on another replica (docs/limits.md). In cluster mode
(FEEDBACK_DB names a database server, which replicas share) the web app refuses to start on a key that is
unset, a placeholder or shorter than MIN_KEY_LENGTH (UnsafeKey).
"""

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

from handler.decode import payload_to_bytes
from handler.errors import InputError
from web.batching import DRAWING, NUMBER
from web.feedback_store import NOT_A_DIGIT

MAX_AGE = 3600.0  # seconds a ticket is good for: a person presses Right or Wrong within moments
CLOCK_SKEW = 60.0  # replicas' clocks may differ this much: a ticket "from the future" within it is fine
NUMBER_NOT_READ = "null"  # what a /read ticket signs when no number was read (a piece is not a digit)
UNSURE = "u"  # a nonce's last character when the answer was shown "not sure" (NOT_SURE_BELOW): signed with it
NOT_SURE_BELOW = 0.8  # the page's (web/static/js/render.js): below this top probability it says "not sure"
MIN_KEY_LENGTH = 32  # characters: 128 bits as hex (`openssl rand -hex 32` gives 64)
# Words of the placeholders manifests and examples ship ("replace-me-with-a-long-random-hex-string").
PLACEHOLDER_WORDS = ("replace", "change", "placeholder", "example", "secret", "todo", "xxxx")


class UnsafeKey(ValueError):
    """The ticket key would let anyone who read the manifests forge tickets, or replicas disagree."""


class TicketError(InputError):
    """Missing, forged, expired or for another drawing or answer: 403, nothing stored."""

    status = 403


def drawing_hash(body) -> str:
    """SHA-256 (hex) of the image bytes in a /predict body or a feedback image; InputError (as /predict
    would answer) if it holds none. Cheap (base64 and a hash): feedback checks the ticket before the
    costly decode."""
    return hashlib.sha256(payload_to_bytes(body)).hexdigest()


def cluster_mode(feedback_db: str) -> bool:
    """FEEDBACK_DB is a database server's URL (not a SQLite file): the replicas that share it must share
    one key, the deployment's own."""
    return "://" in feedback_db and not feedback_db.lower().startswith("sqlite")


def check_key(key: str) -> None:
    """UnsafeKey unless key will do for a cluster: set, no placeholder, at least MIN_KEY_LENGTH long."""
    make = 'make one with `openssl rand -hex 32` (docs/deployment.md, "Secrets")'
    if not key:
        raise UnsafeKey(f"FEEDBACK_TICKET_KEY is unset: every replica needs the same key; {make}")
    for word in PLACEHOLDER_WORDS:
        if word in key.lower():
            raise UnsafeKey(f'FEEDBACK_TICKET_KEY is a placeholder (it says "{word}"), not a key; {make}')
    if len(key) < MIN_KEY_LENGTH:
        raise UnsafeKey(
            f"FEEDBACK_TICKET_KEY is {len(key)} characters, fewer than {MIN_KEY_LENGTH}: too short; {make}"
        )


@dataclass(frozen=True)
class Tickets:
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    max_age: float = MAX_AGE
    clock: object = time.time

    @classmethod
    def from_env(cls) -> "Tickets":
        key = os.environ.get("FEEDBACK_TICKET_KEY", "")
        max_age = float(os.environ.get("FEEDBACK_TICKET_MAX_AGE", MAX_AGE))
        if cluster_mode(os.environ.get("FEEDBACK_DB", "")):
            check_key(key)
        return cls(key.encode(), max_age) if key else cls(max_age=max_age)

    def _mac(self, sha256: str, version: str, answer: int | str, issued: int, nonce: str) -> str:
        signed = f"number:{answer}" if isinstance(answer, str) else int(answer)
        message = f"{sha256}|{version}|{signed}|{issued}|{nonce}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def issue(self, sha256: str, version: str, answer: int | str, unsure: bool = False) -> str:
        """unsure: the page said "not sure" of the answer; the nonce then ends in UNSURE (signed with it), so
        a confirmation of it may join the writer's memory (web/feedback.py, docs/writers.md)."""
        issued, nonce = int(self.clock()), secrets.token_hex(16) + (UNSURE if unsure else "")
        return f"{issued}.{nonce}.{self._mac(sha256, version, answer, issued, nonce)}"

    def check(self, ticket, sha256: str, version: str, answer: int | str) -> str:
        """The ticket's id (its nonce) if it was issued here for this drawing, version and answer and is
        not too old; else TicketError."""
        if not isinstance(ticket, str) or not ticket:
            raise TicketError("ticket missing: send the ticket that came with the answer (/predict or /read)")
        if not ticket.isascii():  # ours are; and compare_digest takes no other str
            raise TicketError("ticket malformed: send it as the answer gave it")
        try:
            issued_text, nonce, mac = ticket.split(".")
            issued = int(issued_text)
        except ValueError:
            raise TicketError("ticket malformed: send it as the answer gave it") from None
        if not hmac.compare_digest(mac, self._mac(sha256, version, answer, issued, nonce)):
            raise TicketError(
                "ticket invalid: not issued by this service for this drawing, version and answer"
            )
        age = self.clock() - issued
        if age > self.max_age:
            raise TicketError(f"ticket expired: older than {self.max_age:g} s; ask again for a new one")
        if age < -CLOCK_SKEW:
            raise TicketError("ticket invalid: issued in the future")
        return nonce


def with_ticket(
    tickets: Tickets, response: web.Response, answer: dict, body: bytes, kind: str
) -> web.Response:
    """The answer with its feedback ticket spliced into its bytes (the handler's are passed through, not
    re-encoded) when there is one to give (ANSWERED: what it signs, per kind); a body without image
    bytes cannot have been answered by the handler either."""
    try:
        answered = ANSWERED[kind](response.status, answer)
        if answered is None:
            return response
        ticket = tickets.issue(drawing_hash(body), str(answer["version"]), answered, unsure(answer))
    except (KeyError, TypeError, ValueError):  # InputError is a ValueError
        return response
    spliced = response.body.rstrip()[:-1] + b',"ticket":"' + ticket.encode() + b'"}'
    return web.Response(body=spliced, status=response.status, content_type="application/json")


def unsure(answer: dict) -> bool:
    """Whether the page shows the answer "not sure": a digit (or any digit of a number) whose top
    probability is below NOT_SURE_BELOW."""
    pieces = answer.get("digits") or [answer]
    return any(max(piece.get("probabilities") or [1.0]) < NOT_SURE_BELOW for piece in pieces)


def was_unsure(ticket_id: str) -> bool:
    """A checked ticket's id (its nonce) says the answer was shown "not sure"."""
    return ticket_id.endswith(UNSURE)


def digit_answered(status: int, answer: dict) -> int | None:
    """What a ticket signs: a digit read (200), or "not a digit" (422 not_a_digit, NOT_A_DIGIT, which
    feedback can confirm or correct); None for answers with nothing to give feedback on (no digit drawn)."""
    if status == 200:
        return int(answer["digit"])
    return NOT_A_DIGIT if answer.get("reason") == "not_a_digit" else None


def number_answered(status: int, answer: dict) -> str | int | None:
    """A number read (200): its digits as a string, or "null" when a piece is not a digit; a 422 as
    /predict's (no_digit, two_lines, too_many_digits: none)."""
    if status != 200:
        return digit_answered(status, answer)
    number = answer["number"]
    if number is not None and not isinstance(number, str):
        raise TypeError(f"number {number!r} is not a string")
    return NUMBER_NOT_READ if number is None else number


ANSWERED = {DRAWING: digit_answered, NUMBER: number_answered}
