"""Every Prometheus metric of the web app, rendered at GET /metrics with everything else in the default
registry: /predict's and /read's answers (web/traffic.py, web/app.py), batches (web/batching.py), rate
limits (web/ratelimit.py), feedback (web/feedback.py).

Metrics are module-level (one set per process, as Prometheus expects): many apps in one process (the
tests) share them, so compare before/after rather than absolute values. Labels take only bounded values:
`version` is what the handler's answer says (a registered version) or "-" when no version answered, never
the ?version= a client typed.
"""

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

PREDICTIONS = Counter(
    "digit_predictions",
    "/predict answers by the version that answered ('-': none did), how it was chosen (default, canary, "
    "pinned by ?version=) and HTTP status",
    ["version", "route", "status"],
)
# Buckets around what a prediction takes here (docs/performance.md), up to the 10 s timeout.
LATENCY_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY = Histogram(
    "digit_predict_seconds",
    "Time from forwarding a drawing to TorchServe to having its answer, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
READS = Counter(
    "digit_reads",
    "/read answers by the version that answered ('-': none did), how it was chosen (default, canary, "
    "pinned by ?version=) and HTTP status",
    ["version", "route", "status"],
)
READ_LATENCY = Histogram(
    "digit_read_seconds",
    "Time from forwarding a /read drawing to TorchServe to having its answer, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "digit_batch_size",
    "Drawings per request to TorchServe: those that arrived while the model was busy go together "
    "(web/batching.py)",
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 16),
)
RETRIED = Counter(
    "digit_retried_drawings",
    "Drawings asked again alone after their batch failed (a 5xx, a reset, a worker that died: web/batching.py)",
)
UPLOADS_REFUSED = Counter(
    "digit_uploads_refused",
    "Requests answered 503 before their body was read: the bodies in flight were at their bound (web/uploads.py)",
)
# At most 16 digits are read (handler/segment.py MAX_DIGITS): a bucket per count up to 6, then wider.
DIGITS_READ = Histogram(
    "digit_read_digits",
    "Digits per /read answer (200s; a piece judged not a digit counts as one)",
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 12, 16),
)
# What /read is charged by (web/ratelimit.py READ_PIECES_PER_TOKEN, 28 a token: a typical 4-digit
# number); a drawing has at most 300 (handler/segment.py MAX_CANDIDATES).
READ_PIECES = Histogram(
    "digit_read_pieces",
    "Candidate pieces the model read per /read drawing, what /read is charged by (0: refused before the "
    "model, or not answered)",
    buckets=(0, 1, 4, 8, 16, 28, 56, 112, 224, 300),
)
CANARY = Counter(
    "digit_canary_requests", "Requests without ?version= sent to the canary version", ["version"]
)
SHADOW = Counter(
    "digit_shadow_requests",
    "Copies of /predict sent to the shadow version, by outcome: agree / disagree (same digit as the "
    "default's answer or not), failed (no answer), dropped (too many copies in flight), skipped (not in "
    "SHADOW_PERCENT's sample)",
    ["version", "outcome"],
)
READ_SHADOW = Counter(
    "digit_read_shadow_requests",
    "Copies of /read sent to the shadow version, by outcome: agree / disagree (same number as the "
    "default's answer or not), failed, dropped, skipped (as digit_shadow_requests)",
    ["version", "outcome"],
)
SHADOW_IN_FLIGHT = Gauge(
    "digit_shadow_in_flight", "Shadow copies (of /predict and /read) waiting for their answer"
)
RATE_LIMITED = Counter(
    "digit_rate_limited",
    "Requests refused 429 by the rate limit (web/ratelimit.py), by route ('*': the routes without a "
    "limit of their own)",
    ["route"],
)
FEEDBACK_STORED = Counter(
    "feedback",
    "Feedback stored, by the model version that answered and whether its answer was right",
    ["version", "verdict"],
)
NUMBER_FEEDBACK_STORED = Counter(
    "number_feedback",
    "Feedback on numbers (/read) stored, by the model version that answered and whether it was right",
    ["version", "verdict"],
)
FEEDBACK_REFUSED = Counter("feedback_refused", "Feedback not stored, by reason", ["reason"])
for _reason in ("bad_request", "ticket", "ticket_reused", "database"):
    FEEDBACK_REFUSED.labels(_reason)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
