"""The API contract (web/openapi.yaml): a valid OpenAPI 3 document, served as it is at /api/openapi.json,
and describing every route the app has (tests/test_fuzz.py fuzzes what it describes, so a route left
out of it would go unfuzzed)."""

import yaml
from openapi_spec_validator import validate

from tests.contract import HTTP_METHODS, SPEC
from web.app import Config, init_app
from web.ratelimit import UNLIMITED


def contract() -> dict:
    return yaml.safe_load(SPEC.read_text())


def test_the_contract_is_valid_openapi_3():
    document = contract()
    validate(document)  # raises on any violation of the OpenAPI 3.0 schema or broken $ref
    assert document["openapi"].startswith("3.")


async def test_the_contract_is_served_as_json(aiohttp_client, tmp_path):
    client = await aiohttp_client(init_app(Config(run_dir=tmp_path)))
    response = await client.get("/api/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == contract()


def test_every_route_of_the_app_is_in_the_contract(tmp_path):
    app = init_app(Config(run_dir=tmp_path))
    routes = {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        # aiohttp adds HEAD beside every GET; the static files are described in prose only.
        if route.method != "HEAD" and not route.resource.canonical.startswith("/static")
    }
    paths = contract()["paths"]
    documented = {f"{m.upper()} {path}" for path, item in paths.items() for m in item if m in HTTP_METHODS}
    assert routes == documented


def test_every_rate_limited_route_documents_its_429_with_retry_after(tmp_path):
    """web/ratelimit.py limits every route but health and metrics: each of them lists the 429."""
    spec = contract()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                assert ("429" in operation["responses"]) == (path not in UNLIMITED), (method, path)
    too_many = spec["components"]["responses"]["TooManyRequests"]
    assert too_many["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert too_many["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_every_error_the_contract_lists_is_the_error_shape():
    predict = contract()["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "404", "413", "415", "422", "502", "503", "504"} <= set(predict)
    for status, response in predict.items():
        schema = response.get("$ref") or response["content"]["application/json"]["schema"]["$ref"]
        expected = {"200": "/Prediction", "422": "/Unreadable"}.get(
            status, ("/Error", "/BadRequest", "/TooManyRequests")
        )
        assert schema.endswith(expected), status
    # 422 is still the error shape, plus a reason a client can tell apart, and the guess when there is one.
    schemas = contract()["components"]["schemas"]
    unreadable = schemas["Unreadable"]
    assert {"error", "reason"} <= set(unreadable["required"])
    assert unreadable["properties"]["error"] == schemas["Error"]["properties"]["error"]
    assert unreadable["properties"]["reason"]["enum"] == ["no_digit", "not_a_digit"]
    assert unreadable["properties"]["probabilities"] == schemas["Prediction"]["properties"][
        "probabilities"
    ] | {"description": unreadable["properties"]["probabilities"]["description"]}


def test_read_takes_what_predict_takes_and_its_errors_are_the_error_shape():
    """/read: /predict's bodies, ?version= and errors (YAML anchors: one text for both), its own 200 and
    422 (no_digit, two_lines, too_many_digits: nothing read, so no guess and no ticket)."""
    paths, schemas = contract()["paths"], contract()["components"]["schemas"]
    predict, read = paths["/predict"]["post"], paths["/read"]["post"]
    assert read["requestBody"] == predict["requestBody"] and read["parameters"] == predict["parameters"]
    for status in ("400", "404", "413", "415", "429", "502", "503", "504"):
        assert read["responses"][status] == predict["responses"][status], status
    assert read["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReadAnswer")
    assert read["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Unread")
    assert schemas["Unread"]["properties"]["reason"]["enum"] == ["no_digit", "two_lines", "too_many_digits"]
    assert schemas["Unread"]["properties"]["error"] == schemas["Error"]["properties"]["error"]
    answer, digit = schemas["ReadAnswer"], schemas["DigitRead"]["properties"]
    assert {"number", "digits", "version", "ticket"} <= set(answer["required"])
    assert (
        answer["properties"]["ticket"]["pattern"] == schemas["Prediction"]["properties"]["ticket"]["pattern"]
    )
    for name in ("probabilities", "input_28x28"):
        assert {k: v for k, v in digit[name].items() if k != "description"} == {
            k: v for k, v in schemas["Prediction"]["properties"][name].items() if k != "description"
        }
