"""TorchServe's MockContext plus its real Context's per-item response setters: the handler in-process, with
no Java and no frontend (tests/test_handler.py, bench/toolkit.py handler)."""

import json
from pathlib import Path

from ts.torch_handler.unit_tests.test_utils.mock_context import MockContext


class Context(MockContext):
    """MockContext plus the per-item response setters of TorchServe's real Context (ts/context.py)."""

    def __init__(self, model_dir: Path):
        super().__init__(model_pt_file="model.pt", model_dir=str(model_dir), model_file=None)
        self.statuses, self.content_types = {}, {}

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx, value):
        self.content_types[idx] = value


def handle(handler, context, rows) -> list[dict]:
    """handle() as TorchServe's worker sends it: each answer is JSON bytes, marked as JSON."""
    context.content_types.clear()
    context.statuses.clear()
    answers = handler.handle(rows, context)
    assert all(isinstance(a, bytes) for a in answers)
    assert context.content_types == dict.fromkeys(range(len(rows)), "application/json")
    return [json.loads(a) for a in answers]
