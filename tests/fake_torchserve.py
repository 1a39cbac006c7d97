"""A fake TorchServe for the web app in-process (tests/test_web.py, tests/test_health.py): it records what it
is sent and answers as the test sets it. The fixture `fake_torchserve` (tests/conftest.py) serves it.

The returned dict is both the record and the controls:
  auth, paths, content_types, bodies   what each prediction request carried;
  valid      the inference key it accepts (/token renews it, writing the key file, as TorchServe does);
  status     not 200: every prediction gets this status and {"error": "whatever"};
  raw        answer these bytes as JSON (raw_status: with that status, default 200); delay: seconds before answering; refuse_every_key: refuse all;
  number     (status, answer) for each part named number-N (a /read: web/batching.py), READ by default;
  pieces     the candidate pieces each number-N part says the model read (what /read is charged by), 2;
  url, run_dir   where it listens and the run dir holding its key_file.json.
A request of parts (web/batching.py) is answered as the handler does: a list of {"status", "answer",
"pieces"}, a drawing-N part {"digit": 3, "echo": <its body>} of 1 piece, a number-N part the number answer
plus its echo.
"""

import asyncio
import base64
import json
import re

from aiohttp import web

INFERENCE_KEY, MANAGEMENT_KEY, API_KEY = "inf-1", "mgmt-1", "api-1"
_DIGIT = {"probabilities": [0.01] * 9 + [0.91], "input_28x28": base64.b64encode(bytes(784)).decode()}
# A number's answer as the handler gives it (docs/api.md): "42" written on a 560x280 canvas.
READ = {
    "number": "42",
    "digits": [
        {"digit": 4, **_DIGIT, "box": [60, 50, 150, 180]},
        {"digit": 2, **_DIGIT, "box": [300, 55, 140, 170]},
    ],
    "version": "1.0",
}


def write_keys(path, inference: str) -> None:
    doc = {
        "management": {"key": MANAGEMENT_KEY, "expiration time": "2099-01-01T00:00:00Z"},
        "inference": {"key": inference, "expiration time": "2099-01-01T00:00:00Z"},
        "API": {"key": API_KEY},
    }
    path.write_text(json.dumps(doc))


def fake_app(run_dir) -> tuple[web.Application, dict]:
    seen = {"auth": [], "paths": [], "content_types": [], "bodies": []}
    seen.update(renewals=0, valid=INFERENCE_KEY, delay=0, status=200, run_dir=run_dir)
    key_file = run_dir / "key_file.json"
    write_keys(key_file, INFERENCE_KEY)

    async def predictions(request):
        seen["auth"].append(request.headers.get("Authorization"))
        seen["paths"].append(request.path)
        seen["content_types"].append(request.headers.get("Content-Type"))
        body = await request.read()  # this request's, whatever others arrive while it sleeps
        seen["bodies"].append(body)
        await asyncio.sleep(seen["delay"])
        if seen.get("refuse_every_key") or request.headers.get("Authorization") != f"Bearer {seen['valid']}":
            return web.json_response(
                {"code": 400, "type": "InvalidKeyException", "message": "no"}, status=400
            )
        if seen["status"] != 200:
            return web.json_response({"error": "whatever"}, status=seen["status"])
        if request.match_info.get("version") == "9":
            return web.json_response({"code": 404, "message": "Model version: 9 does not exist"}, status=404)
        if "raw" in seen:
            return web.Response(
                body=seen["raw"], status=seen.get("raw_status", 200), content_type="application/json"
            )
        if request.content_type != "multipart/form-data":
            return web.json_response({"digit": 3, "echo": body.decode()})
        return web.json_response([answer(*part) for part in parts(body, request.headers["Content-Type"])])

    def answer(name: str, body: bytes) -> dict:
        if name.startswith("number-"):
            status, number = seen.get("number", (200, READ))
            pieces = seen.get("pieces", 2)
            return {"status": status, "answer": {**number, "echo": body.decode()}, "pieces": pieces}
        return {"status": 200, "answer": {"digit": 3, "echo": body.decode()}, "pieces": 1}

    async def token(request):
        assert request.headers.get("Authorization") == f"Bearer {API_KEY}"
        assert request.query["type"] == "inference"
        seen["renewals"] += 1
        seen["valid"] = f"inf-{seen['renewals'] + 1}"
        write_keys(key_file, seen["valid"])
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/predictions/mnist", predictions)
    app.router.add_post("/predictions/mnist/{version}", predictions)
    app.router.add_get("/token", token)
    return app, seen


def parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(name, body) of each part of a multipart request web/batching.py made."""
    boundary = content_type.split("boundary=")[1].encode()
    found = []
    for piece in body.split(b"--" + boundary)[1:-1]:
        head, value = piece.split(b"\r\n\r\n", 1)
        found.append((re.search(rb'; name="([^"]+)"', head)[1].decode(), value[: -len(b"\r\n")]))
    return found
