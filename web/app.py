"""The web app: serves the canvas page and proxies drawings to TorchServe.

Browser --POST /predict--> this app --POST /predictions/mnist[/version]--> TorchServe --> handler.
It holds only TorchServe's inference key (plus the API key, used for nothing but renewing that
inference key when it expires); nothing here can register, unregister or scale models.
"""

import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import uvloop
from aiohttp import web

from web.metrics import metrics
from web.registry import model_versions
from web.tokens import KeyFile
from web.traffic import Traffic, TrafficConfig

STATIC = Path(__file__).parent / "static"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    traffic: TrafficConfig = TrafficConfig()  # canary and shadow versions (web/traffic.py)

    @classmethod
    def from_env(cls) -> "Config":
        env = os.environ
        return cls(
            port=int(env.get("WEB_PORT", cls.port)),
            inference_url=env.get("TS_INFERENCE_URL", cls.inference_url),
            management_url=env.get("TS_MANAGEMENT_URL", cls.management_url),
            run_dir=Path(env.get("TS_RUN_DIR", cls.run_dir)),
            timeout=float(env.get("WEB_TIMEOUT", cls.timeout)),
            traffic=TrafficConfig.from_env(),
        )


CONFIG = web.AppKey("config", Config)
SESSION = web.AppKey("session", aiohttp.ClientSession)
KEYS = web.AppKey("keys", KeyFile)
TRAFFIC = web.AppKey("traffic", Traffic)


async def client_session(app: web.Application):
    config = app[CONFIG]
    # One pooled keep-alive session for the app's life: no TCP handshake per prediction.
    connector = aiohttp.TCPConnector(limit=config.pool_size, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        app[SESSION] = session
        yield


async def shadow_tasks(app: web.Application):
    yield
    await app[TRAFFIC].close()  # before the session closes under the copies still in flight


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def predict(request: web.Request) -> web.StreamResponse:
    version = request.query.get("version", "")
    if version and not VERSION_RE.match(version):
        return error(400, "version must be letters, digits, '.', '_' or '-' (at most 64)")
    body = drawing_from_body(await request.read(), request.content_type)
    if not body.strip():
        return error(400, "empty body: send the canvas as a data URL (canvas.toDataURL())")
    return await request.app[TRAFFIC].answer(request, partial(forward, request.app, body), version)


async def forward(app: web.Application, body: bytes, version: str) -> web.Response:
    """The drawing to TorchServe (`version`, or the default for ""), its answer in our shape."""
    config, session, keys = app[CONFIG], app[SESSION], app[KEYS]
    url = f"{config.inference_url}/predictions/{config.model}" + (f"/{version}" if version else "")
    try:
        for attempt in range(2):
            # An explicit Content-Type: TorchServe decodes form and multipart bodies into fields.
            headers = {"Content-Type": "application/octet-stream", **keys.headers("inference")}
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
            if key_refused(response.status, payload) and attempt == 0:
                await keys.renew(session, config.management_url, "inference")
                continue
            return relay(response.status, payload, config.model, version)
    except TimeoutError:
        return error(504, "the model server did not answer in time")
    except aiohttp.ClientConnectionError:
        return error(503, "the model server is down; try again in a moment")
    return error(502, "the model server refused the inference key")


def drawing_from_body(body: bytes, content_type: str) -> bytes:
    """The drawing as sent: raw text or JSON pass through; a form body (jQuery's default) is unwrapped."""
    if content_type == "application/x-www-form-urlencoded" and not body.lstrip().startswith((b"data:", b"{")):
        fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        if "image" in fields:
            return fields["image"][0].encode("latin-1")
    return body


def key_refused(status: int, body: bytes) -> bool:
    """TorchServe answers an expired or wrong key with 400 InvalidKeyException (not 401)."""
    return status in (400, 401) and b"InvalidKeyException" in body


def relay(status: int, body: bytes, model: str, version: str) -> web.Response:
    """TorchServe's answer in our shape: the handler's JSON as is, its own errors as {"error": ...}."""
    if status == 200 and body.startswith(b"{"):
        # The handler's answer is already our JSON: pass the bytes through, no parse and re-encode.
        return web.Response(body=body, content_type="application/json")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if status == 404:
        what = f"version {version} of model {model}" if version else f"model {model}"
        return error(404, f"{what} is not registered on the model server")
    if isinstance(payload, dict) and "error" in payload and 400 <= status < 500:
        return web.json_response(payload, status=status)
    message = payload.get("message") if isinstance(payload, dict) else None
    if 400 <= status < 500:
        return error(status, message or "the model server rejected the request")
    return error(502, f"the model server failed ({status}: {message or 'no details'})")


async def models(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response(model_versions(config.run_dir, config.model))


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
        return error(exc.status, exc.reason)


def init_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=config.max_body, middlewares=[json_errors])
    app[CONFIG] = config
    app[KEYS] = KeyFile(config.run_dir / "key_file.json")
    app[TRAFFIC] = Traffic(config.traffic)
    app.cleanup_ctx.append(client_session)
    app.cleanup_ctx.append(shadow_tasks)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", index)
    app.router.add_post("/predict", predict)
    app.router.add_get("/api/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static", STATIC)
    return app


def main() -> None:
    config = Config.from_env()
    print(f"Digit recognizer: http://{config.host}:{config.port}", flush=True)
    # uvloop: a prediction here is event-loop work only (two HTTP exchanges), and uvloop makes it cheaper:
    # at 1 client the hop added 1.5 ms to p50 over direct TorchServe on asyncio's loop, 0.1 ms on uvloop.
    loop = uvloop.new_event_loop()
    web.run_app(init_app(config), host=config.host, port=config.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
