"""The web app: serves the canvas page and proxies drawings to TorchServe.

Browser --POST /predict or /read--> this app --POST /predictions/mnist[/version]--> TorchServe --> handler.
/predict reads one digit, /read a whole number (docs/api.md); drawings of both that arrive while
TorchServe is busy go to it together, their clients taking turns (web/batching.py).
It holds only TorchServe's inference key (plus the API key, used for nothing but renewing that
inference key when it expires); nothing here can register, unregister or scale models.

Here: the app factory (init_app), its keys and thin views. A view takes what the request asks
(web/bodies.py), lets web/traffic.py choose the version, and sends the drawing (web/answers.py);
settings are web/config.py's, errors web/errors.py's, counters web/metrics.py's.
"""

import gc
import sys
from functools import partial
from pathlib import Path

import aiohttp
import uvloop
import yaml
from aiohttp import web

from web.answers import Answers
from web.batching import DRAWING, NUMBER, Batcher
from web.bodies import BodyError, asked
from web.config import Config
from web.errors import error, json_errors
from web.feedback import FEEDBACK, Feedback, open_feedback_store, post_feedback
from web.feedback_store import FeedbackStore
from web.metrics import DIGITS_READ, READ_PIECES, metrics
from web.ratelimit import CHARGE, CLIENT, rate_limits, read_tokens
from web.readiness import Watch
from web.registry import model_versions
from web.tickets import UnsafeKey
from web.torchserve import KeyFile, TorchServeClient
from web.traffic import PREDICT, READ, Send, Traffic
from web.uploads import bounded_uploads
from web.writers import WRITERS, BadWriter, Writers, forget_writer, writer_key

STATIC = Path(__file__).parent / "static"
OPENAPI = Path(__file__).parent / "openapi.yaml"  # the API contract, served as /api/openapi.json

CONFIG = web.AppKey("config", Config)
TORCHSERVE = web.AppKey("torchserve", TorchServeClient)
SPEC = web.AppKey("spec", dict)
TRAFFIC = web.AppKey("traffic", Traffic)
BATCHER = web.AppKey("batcher", Batcher)
ANSWERS = web.AppKey("answers", Answers)
TORCHSERVE_FRESH = web.AppKey("torchserve_fresh", TorchServeClient)  # a new connection per request
READINESS = web.AppKey("readiness", Watch)


async def client_session(app: web.Application):
    config = app[CONFIG]
    # One pooled keep-alive session for the app's life: no TCP handshake per prediction.
    connector = aiohttp.TCPConnector(limit=config.pool_size, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout)
    # A failed batch's drawings are asked again on connections of their own (web/batching.py): never a
    # pooled one that the failure may have left half-closed.
    fresh = aiohttp.TCPConnector(limit=config.pool_size, force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(connector=fresh, timeout=timeout) as fresh_session,
    ):
        keys = KeyFile(config.run_dir / "key_file.json")
        app[TORCHSERVE], app[TORCHSERVE_FRESH] = (
            TorchServeClient(s, config.inference_url, config.management_url, keys, config.model)
            for s in (session, fresh_session)
        )
        yield


async def readiness_probe(app: web.Application):
    """The readiness watch's probe (web/readiness.py: started by the first /readyz), stopped before the
    session it uses closes."""
    yield
    await app[READINESS].close()


async def background_requests(app: web.Application):
    """On shutdown, before the session closes under them: shadow copies, then batches still out."""
    yield
    await app[TRAFFIC].close()
    await app[BATCHER].close()


async def ask_model(
    app: web.Application, body: bytes, version: str, content_type: str, fresh: bool = False
) -> tuple[int, bytes]:
    """TorchServe's (status, body) for a drawing or a batch of them (web/batching.py's `ask`), on a new
    connection if `fresh` (its `ask_again`)."""
    return await app[TORCHSERVE_FRESH if fresh else TORCHSERVE].predict(body, version, content_type)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def sender(request: web.Request, kind: str) -> tuple[str, Send]:
    """What a /predict or /read asks: its version, and send(version) for its drawing with its writer's
    memory (web/writers.py); BodyError or BadWriter (400s) for a bad body or X-Writer."""
    writer = writer_key(request)
    version, body = await asked(request)
    memory = await request.app[WRITERS].memory(writer)
    return version, request.app[ANSWERS].sender(body, kind, request[CLIENT], memory)


async def predict(request: web.Request) -> web.StreamResponse:
    """A digit (docs/api.md): from the default, a canary, or ?version= (web/traffic.py); blended with
    the X-Writer's memory when they have one (docs/writers.md)."""
    try:
        version, send = await sender(request, DRAWING)
    except (BodyError, BadWriter) as e:
        return error(400, str(e))
    return (await request.app[TRAFFIC].answer(request, send, version, PREDICT)).response


async def read(request: web.Request) -> web.StreamResponse:
    """A number: /predict's bodies, ?version=, canary and shadow, with counters of its own (docs/api.md,
    "Reading a number"). Charged by the pieces it was cut into: the token the rate limit took pays for a
    typical read, a dearer one takes the rest of its cost from the client's bucket (web/ratelimit.py)."""
    try:
        version, send = await sender(request, NUMBER)
    except (BodyError, BadWriter) as e:
        return error(400, str(e))
    response, answer, pieces = await request.app[TRAFFIC].answer(request, send, version, READ)
    READ_PIECES.observe(pieces)
    if read_tokens(pieces) > 1:  # the one token admission took paid for the rest
        request[CHARGE](read_tokens(pieces) - 1)
    if response.status == 200:
        DIGITS_READ.observe(len(answer.get("digits", ())))
    return response


async def healthz(request: web.Request) -> web.Response:
    """Liveness: this process answers. Never asks TorchServe, so its restarts never restart the web app."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: a worker of the default model answers (web/torchserve.py, the one rule), as last heard
    (web/readiness.py): from the default version's answers to drawings, or the background probe. Never a
    request to TorchServe of its own, however often it is asked."""
    readiness = await request.app[READINESS].ready()
    return web.json_response({"status": "ready"}) if readiness.ready else error(503, readiness.reason)


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


def init_app(config: Config) -> web.Application:
    app = web.Application(
        client_max_size=config.max_body,
        middlewares=[
            rate_limits(config.limits),
            json_errors(config.max_body),
            bounded_uploads(config.uploads, config.max_body),
        ],
    )
    app[CONFIG] = config
    app[SPEC] = yaml.safe_load(OPENAPI.read_text())
    app.cleanup_ctx.append(client_session)
    # A new connection per probe: never a pooled one TorchServe may have closed while it idled.
    app[READINESS] = Watch(lambda: app[TORCHSERVE_FRESH].ready(), config.ready_interval)
    app.cleanup_ctx.append(readiness_probe)
    versions = partial(model_versions, config.run_dir, config.model)
    store = FeedbackStore(config.feedback_db)
    app[FEEDBACK] = Feedback(store, versions, config.tickets)
    app[WRITERS] = Writers(store)  # writers' memories live in the feedback database (web/writers.py)
    app.cleanup_ctx.append(open_feedback_store)
    app[TRAFFIC] = Traffic(config.traffic)
    app[BATCHER] = Batcher(
        partial(ask_model, app),
        config.max_batch,
        config.batches_in_flight,
        config.timeout,
        ask_again=partial(ask_model, app, fresh=True),
    )
    app[ANSWERS] = Answers(app[BATCHER], config.tickets, config.model, app[READINESS].answered)
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
    app.router.add_delete("/api/writer", forget_writer)
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
