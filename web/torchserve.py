"""TorchServe from a client's side: the key file, the inference and management calls with their key
(renewed once when refused), the one readiness rule, and TorchServe's answers relayed in our API's shape.
The web app (web/app.py), scripts/tsctl.py (and so scripts/lifecycle.py) and the tests talk to
TorchServe through this module.

TorchServe (token authorization on, its default) writes key_file.json into its working directory with
three keys: inference, management and an API key whose only use is to mint a new inference or
management key when one expires (after token_expiration_min). Clients read the file, not a copy, so a
renewed key is picked up at once. Each renewal makes the key before it invalid, so the requests refused
together when a key expires renew it once between them (TorchServeClient.renew_once), not once each.
"""

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from web.errors import error

# A blank 28x28 canvas: the handler answers it 422 "no digit drawn" after decoding it, before the model.
# A 422 (or a 200) proves that a worker of the default model is up and runs our handler (a worker is
# READY only once the handler's initialize has loaded and warmed the model); it costs a PNG decode per
# probe, nothing a probe every few seconds would notice.
READINESS_PROBE = b"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAFklEQVR42mP8z4AbMDGMSo5KjkpCAQCD/gE3G98i8wAAAABJRU5ErkJggg=="
# A ready worker answers the probe in milliseconds; one that takes a second is not ready (probes give up
# after 2 s, deploy/kubernetes.yaml).
PROBE_TIMEOUT = 1.0


class KeyFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._mtime = None
        self._keys = {}

    def key(self, kind: str) -> str | None:
        """'inference', 'management' or 'API'; None when token authorization is off (no key file)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime != self._mtime:
            try:
                doc = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                return self._keys.get(kind)  # caught mid-write: the previous keys are still the best bet
            self._keys = {name: entry.get("key") for name, entry in doc.items() if isinstance(entry, dict)}
            self._mtime = mtime
        return self._keys.get(kind)

    def forget(self) -> None:
        """Read the file again at the next key(): a rewrite within the clock's tick keeps its mtime."""
        self._mtime = None

    def headers(self, kind: str) -> dict:
        key = self.key(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}


def key_refused(status: int, body: bytes) -> bool:
    """TorchServe answers an expired or wrong key with 400 InvalidKeyException (not 401)."""
    return status in (400, 401) and b"InvalidKeyException" in body


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""  # why not, in words for a 503 or a person at the terminal


def readiness(status: int | None) -> Readiness:
    """The one readiness rule (the web app's /readyz, `tsctl start`), for the status TorchServe answered
    the probe with (None: no answer at all); any answer of the handler's to a drawing, 200 or 422, says
    the same. TorchServe's /ping is not enough: in 0.12 it needs the inference key too, and says "Healthy"
    with no worker at all once a model's minimum is 0; the worker list needs the management key."""
    if status is None:
        return Readiness(False, "the model server does not answer")
    if status in (200, 422):
        return Readiness(True)
    return Readiness(False, f"the model server has no ready worker for the default model ({status})")


@dataclass
class TorchServeClient:
    """Calls to one TorchServe over an aiohttp session, each with the key of its API."""

    session: aiohttp.ClientSession
    inference_url: str
    management_url: str
    keys: KeyFile
    model: str = "mnist"
    # Per kind of key: renewals asked for so far, and the lock one renewal at a time holds (renew_once).
    _renewals: dict = field(default_factory=dict, init=False, repr=False)
    _renewing: dict = field(default_factory=dict, init=False, repr=False)

    async def predict(
        self, body: bytes, version: str = "", content_type: str = "application/octet-stream", **options
    ) -> tuple[int, bytes]:
        """POST a drawing (or a batch of them) to the model, `version` or the default for "".
        `options` go to the session's request (e.g. a timeout; without one, the session's own applies)."""
        path = f"/predictions/{self.model}" + (f"/{version}" if version else "")
        return await self.call("inference", "POST", path, body, content_type, **options)

    async def call(
        self,
        api: str,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/octet-stream",
        **options,
    ) -> tuple[int, bytes]:
        """(status, body) of a request to the 'inference' or 'management' API with its key, the key
        renewed once if it is refused."""
        url = (self.inference_url if api == "inference" else self.management_url) + path
        for attempt in range(2):
            renewals = self._renewals.get(api, 0)  # before the key is read: a renewal after it is seen
            headers = self.keys.headers(api)
            if body is not None:
                # Explicit: TorchServe decodes form and multipart bodies into fields (wanted for a batch's
                # parts, never for a lone drawing).
                headers["Content-Type"] = content_type
            async with self.session.request(method, url, data=body, headers=headers, **options) as response:
                payload = await response.read()
            if key_refused(response.status, payload) and attempt == 0:
                await self.renew_once(api, renewals)
                continue
            break
        return response.status, payload

    async def ready(self, timeout: float = PROBE_TIMEOUT) -> Readiness:
        """Whether a worker of the default model answers the readiness probe within `timeout` seconds."""
        try:
            status, _ = await self.predict(READINESS_PROBE, timeout=aiohttp.ClientTimeout(total=timeout))
        except (TimeoutError, aiohttp.ClientError):
            return readiness(None)
        return readiness(status)

    async def renew_once(self, kind: str, seen: int) -> None:
        """Renew the key of this kind unless it was renewed since the refused request read it (`seen`
        renewals then). Requests refused together so renew it once: renewing in turn, each would make
        the key the one before it got invalid, and be refused again with that one."""
        async with self._renewing.setdefault(kind, asyncio.Lock()):
            if self._renewals.get(kind, 0) != seen:
                return  # renewed meanwhile: the caller tries the new key
            try:
                await self.renew(kind)
            finally:  # tried once for all of them, answered or not: no storm of renewals
                self._renewals[kind] = seen + 1
                self.keys.forget()

    async def renew(self, kind: str) -> bool:
        """Ask TorchServe for a new key of this kind ('inference' or 'management'); it rewrites the file."""
        url = f"{self.management_url}/token"
        async with self.session.get(url, params={"type": kind}, headers=self.keys.headers("API")) as response:
            return response.status == 200


def relay(status: int, body: bytes, model: str, version: str) -> web.Response:
    """TorchServe's answer in our shape: the handler's JSON as is, its own errors as {"error": ...}."""
    if key_refused(status, body):
        return error(502, "the model server refused the inference key")
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
