"""The web app: serves the canvas page and proxies drawings to TorchServe.

Browser --POST /predict or /read--> this app --POST /predictions/mnist[/version]--> TorchServe --> handler.
/predict reads one digit, /read a whole number (docs/api.md); drawings of both that arrive while
TorchServe is busy go to it together, their clients taking turns (web/batching.py).
It holds only TorchServe's inference key (plus the API key, used for nothing but renewing that
inference key when it expires); nothing here can register, unregister or scale models.
"""

import gc
import json
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp
import uvloop
import yaml
from aiohttp import web

from web.batching import DRAWING, NUMBER, Batcher
from web.bodies import BodyError, drawing
from web.feedback import FEEDBACK, Feedback, open_feedback_store, post_feedback
from web.feedback_store import DEFAULT_DB, NOT_A_DIGIT, FeedbackStore
from web.metrics import DIGITS_READ, READ_PIECES, metrics
from web.ratelimit import CHARGE, CLIENT, LimitConfig, rate_limits, read_tokens
from web.registry import VERSION_RE, model_versions
from web.tickets import Tickets, UnsafeKey, drawing_hash
from web.torchserve import KeyFile, TorchServeClient, error, relay
from web.traffic import Traffic, TrafficConfig

STATIC = Path(__file__).parent / "static"
OPENAPI = Path(__file__).parent / "openapi.yaml"  # the API contract, served as /api/openapi.json


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5500
    inference_url: str = "http://127.0.0.1:8080"
    management_url: str = "http://127.0.0.1:8081"  # only its /token endpoint, to renew the inference key
    run_dir: Path = Path("run")  # TorchServe's working directory: key_file.json and config snapshots
    model: str = "mnist"
    max_body: int = 1024 * 1024  # a 280x280 canvas data URL is 10-50 KB
    timeout: float = 5.0  # a prediction takes milliseconds; this only bounds a hung backend
    connect_timeout: float = 0.5
    pool_size: int = 64
    max_batch: int = 8  # drawings per request to TorchServe (web/batching.py)
    # Requests of one version at TorchServe at once: one at the worker and one queued behind it, sent
    # once it is as large as the one ahead (web/batching.py). With more workers (GPU nodes), workers + 1.
    batches_in_flight: int = 2
    feedback_db: str = DEFAULT_DB  # a SQLite path or a database URL (web/feedback_store.py)
    traffic: TrafficConfig = TrafficConfig()  # canary and shadow versions (web/traffic.py)
    limits: LimitConfig = LimitConfig()  # per client and route (web/ratelimit.py)
    tickets: Tickets = Tickets()  # signs answers for feedback (web/tickets.py)

    @classmethod
    def from_env(cls) -> "Config":
        env = os.environ
        return cls(
            host=env.get("WEB_HOST", cls.host),  # 0.0.0.0 in the container (deploy/Containerfile)
            port=int(env.get("WEB_PORT", cls.port)),
            inference_url=env.get("TS_INFERENCE_URL", cls.inference_url),
            management_url=env.get("TS_MANAGEMENT_URL", cls.management_url),
            run_dir=Path(env.get("TS_RUN_DIR", cls.run_dir)),
            timeout=float(env.get("WEB_TIMEOUT", cls.timeout)),
            max_batch=int(env.get("WEB_MAX_BATCH", cls.max_batch)),
            batches_in_flight=int(env.get("WEB_BATCHES_IN_FLIGHT", cls.batches_in_flight)),
            feedback_db=env.get("FEEDBACK_DB", cls.feedback_db),
            traffic=TrafficConfig.from_env(),
            limits=LimitConfig.from_env(),
            tickets=Tickets.from_env(),
        )


CONFIG = web.AppKey("config", Config)
TORCHSERVE = web.AppKey("torchserve", TorchServeClient)
SPEC = web.AppKey("spec", dict)
TRAFFIC = web.AppKey("traffic", Traffic)
BATCHER = web.AppKey("batcher", Batcher)


async def client_session(app: web.Application):
    config = app[CONFIG]
    # One pooled keep-alive session for the app's life: no TCP handshake per prediction.
    connector = aiohttp.TCPConnector(limit=config.pool_size, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        keys = KeyFile(config.run_dir / "key_file.json")
        app[TORCHSERVE] = TorchServeClient(
            session, config.inference_url, config.management_url, keys, config.model
        )
        yield


async def background_requests(app: web.Application):
    """On shutdown, before the session closes under them: shadow copies, then batches still out."""
    yield
    await app[TRAFFIC].close()
    await app[BATCHER].close()


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def predict(request: web.Request) -> web.StreamResponse:
    asked = await asked_of(request)
    if isinstance(asked, web.Response):
        return asked
    version, body = asked
    return await request.app[TRAFFIC].answer(request, partial(forward, request, body), version)


async def read(request: web.Request) -> web.Response:
    """A number: /predict's bodies and ?version=, a canary as /predict's (web/traffic.py's route); never
    shadowed, and outside /predict's counters and latency (docs/api.md, "Reading a number"). Charged by
    the pieces it was cut into: the token the rate limit took pays for a typical read, a dearer one takes
    the rest of its cost from the client's bucket (web/ratelimit.py)."""
    asked = await asked_of(request)
    if isinstance(asked, web.Response):
        return asked
    version, body = asked
    response, answer, pieces = await answer_of(request, body, request.app[TRAFFIC].route(version)[0], NUMBER)
    READ_PIECES.observe(pieces)
    if read_tokens(pieces) > 1:  # the one token admission took paid for the rest
        request[CHARGE](read_tokens(pieces) - 1)
    if response.status == 200:
        DIGITS_READ.observe(len(answer.get("digits", ())))
    return response


async def asked_of(request: web.Request) -> tuple[str, bytes] | web.Response:
    """The ?version= and the drawing of a /predict or /read, or the 400 that says what is wrong."""
    version = request.query.get("version", "")
    if version and not VERSION_RE.match(version):
        return error(400, "version must be letters, digits, '.', '_' or '-' (at most 64)")
    try:
        body = await drawing(request)
    except BodyError as e:
        return error(400, str(e))
    if not body.strip():
        return error(400, "empty body: send the canvas as a data URL (canvas.toDataURL())")
    return version, body


async def forward(request: web.Request, body: bytes, version: str) -> web.Response:
    """/predict's send (web/traffic.py): the drawing to TorchServe as one digit."""
    return (await answer_of(request, body, version, DRAWING))[0]


async def answer_of(
    request: web.Request, body: bytes, version: str, kind: str
) -> tuple[web.Response, dict, int]:
    """The request's drawing to TorchServe as `kind` (web/batching.py; `version`, or the default for ""),
    queued as its client's (the rate limiter's key): its answer in our shape, with its ticket, the
    answer parsed ({} when it is none of the handler's), and the images of it the model read (Reply)."""
    app = request.app
    try:
        status, payload, pieces = await app[BATCHER].predict(version, body, kind, client=request[CLIENT])
    except TimeoutError:
        return error(504, "the model server did not answer in time"), {}, 0
    except aiohttp.ClientConnectionError:
        return error(503, "the model server is down; try again in a moment"), {}, 0
    response = relay(status, payload, app[CONFIG].model, version)
    if response.status not in (200, 422):
        return response, {}, pieces
    answer = json.loads(response.body)
    return with_ticket(app[CONFIG].tickets, response, answer, body, kind), answer, pieces


def with_ticket(
    tickets: Tickets, response: web.Response, answer: dict, body: bytes, kind: str
) -> web.Response:
    """The answer with its feedback ticket (web/tickets.py) spliced into its bytes (the handler's are
    passed through, not re-encoded) when there is one to give (ANSWERED: what it signs, per kind); a
    body without image bytes cannot have been answered by the handler either."""
    try:
        answered = ANSWERED[kind](response.status, answer)
        if answered is None:
            return response
        ticket = tickets.issue(drawing_hash(body), str(answer["version"]), answered)
    except (KeyError, TypeError, ValueError):  # InputError is a ValueError
        return response
    spliced = response.body.rstrip()[:-1] + b',"ticket":"' + ticket.encode() + b'"}'
    return web.Response(body=spliced, status=response.status, content_type="application/json")


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
    return "null" if number is None else number


ANSWERED = {DRAWING: digit_answered, NUMBER: number_answered}


async def ask_model(app: web.Application, body: bytes, version: str, content_type: str) -> tuple[int, bytes]:
    """TorchServe's (status, body) for a drawing or a batch of them (web/batching.py's `ask`)."""
    return await app[TORCHSERVE].predict(body, version, content_type)


# A blank 28x28 canvas: the handler answers it 422 "no digit drawn" after decoding it, before the model.
# A 422 (or a 200) proves that a worker of the default model is up and runs our handler; it costs a
# PNG decode per probe, nothing a probe every few seconds would notice.
READINESS_PROBE = b"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAFklEQVR42mP8z4AbMDGMSo5KjkpCAQCD/gE3G98i8wAAAABJRU5ErkJggg=="
# A ready worker answers the probe in milliseconds; one that takes a second is not ready (probes give up
# after 2 s, deploy/kubernetes.yaml).
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1.0)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: this process answers. Never asks TorchServe, so its restarts never restart the web app."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: TorchServe answers and the default model has a ready worker, shown by a real request
    to it with the inference key (TorchServe's /ping also needs a key, and says "Healthy" with no
    worker at all once a model's minimum is 0; the worker list needs the management key, never held here)."""
    try:
        status, _ = await request.app[TORCHSERVE].predict(READINESS_PROBE, timeout=PROBE_TIMEOUT)
    except (TimeoutError, aiohttp.ClientError):
        return error(503, "the model server does not answer")
    if status in (200, 422):
        return web.json_response({"status": "ready"})
    return error(503, f"the model server has no ready worker for the default model ({status})")


async def models(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response(model_versions(config.run_dir, config.model))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[SPEC])


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


@web.middleware
async def json_errors(request: web.Request, handler):
    """Every error a client can cause is a JSON {"error": ...}, including aiohttp's own (404, 405, 413)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            return error(413, f"the body is too large (at most {request.app[CONFIG].max_body} bytes)")
        response = error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the route takes
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def init_app(config: Config) -> web.Application:
    app = web.Application(
        client_max_size=config.max_body, middlewares=[rate_limits(config.limits), json_errors]
    )
    app[CONFIG] = config
    app[SPEC] = yaml.safe_load(OPENAPI.read_text())
    app.cleanup_ctx.append(client_session)
    versions = partial(model_versions, config.run_dir, config.model)
    app[FEEDBACK] = Feedback(FeedbackStore(config.feedback_db), versions, config.tickets)
    app.cleanup_ctx.append(open_feedback_store)
    app[TRAFFIC] = Traffic(config.traffic)
    app[BATCHER] = Batcher(
        partial(ask_model, app), config.max_batch, config.batches_in_flight, config.timeout
    )
    app.cleanup_ctx.append(background_requests)  # after the session: drained before it closes
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", index)
    app.router.add_post("/predict", predict)
    app.router.add_post("/read", read)
    app.router.add_get("/api/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/feedback", post_feedback)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static", STATIC)
    return app


def main() -> None:
    try:
        config = Config.from_env()
    except UnsafeKey as e:  # in a cluster, a placeholder or short key: refuse to start (web/tickets.py)
        sys.exit(f"error: {e}")
    print(f"Digit recognizer: http://{config.host}:{config.port}", flush=True)
    # uvloop: a prediction here is event-loop work only (two HTTP exchanges), and uvloop makes it cheaper
    # than asyncio's own loop (docs/performance.md, "Settings, and why").
    loop = uvloop.new_event_loop()
    app = init_app(config)
    # What exists now (modules, the app) lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it in the middle of a request (a tail-latency hiccup).
    gc.freeze()
    web.run_app(app, host=config.host, port=config.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
