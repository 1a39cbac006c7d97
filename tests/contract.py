"""The API contract (web/openapi.yaml) as the tests read it."""

from tests.stack import ROOT

SPEC = ROOT / "web" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
