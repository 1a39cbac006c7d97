"""The client examples of docs/api.md ("Clients"), taken from the page as they are written and run against
the real stack (its address for the page's 127.0.0.1:5500): docs and tests cannot drift.

Each curl line ends with a comment saying what it prints: `{"digit": 7, ...}`, `{"number": "7", ...}`
(/read), or `{"error": "<start of the message>..."} <status>`. The Python block is run as a script, then its function is given a
text file and must raise with the error JSON's message."""

import ast
import json
import re
import subprocess

import pytest

from tests.stack import ROOT

DOCS_URL = "http://127.0.0.1:5500"
PAGE = ROOT / "docs" / "api.md"
SECTION = re.compile(r"^## Clients\n(.*?)(?=^## |\Z)", re.S | re.M)
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```$", re.S | re.M)
ERROR = re.compile(r'^\{"error": "(?P<start>[^"]*?)(\.\.\.)?"\} (?P<status>\d{3})$')


def examples(language: str) -> list[str]:
    section = SECTION.search(PAGE.read_text()).group(1)
    return [code for lang, code in BLOCK.findall(section) if lang == language]


def curl_lines() -> list[tuple[str, str]]:
    lines = [line for block in examples("sh") for line in block.splitlines() if line.startswith("curl ")]
    return [tuple(part.strip() for part in line.split("  # ", 1)) for line in lines]


def test_the_page_has_the_examples():
    commands = " ".join(command for command, _ in curl_lines())
    for form in ["-F image=@", "--form-string", "--data-binary", "Content-Type: application/json"]:
        assert form in commands
    assert len(examples("python")) == 1 and "requests.post" in examples("python")[0]


@pytest.mark.parametrize("command, prints", curl_lines())
def test_curl_example(stack, command, prints):
    assert DOCS_URL in command
    result = subprocess.run(
        ["bash", "-c", command.replace(DOCS_URL, stack.web_url)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    if prints.startswith(('{"digit": ', '{"number": ')):
        name, value = prints.split(", ...}")[0].lstrip("{").split(": ")
        assert json.loads(result.stdout)[json.loads(name)] == json.loads(value)
    else:
        expected = ERROR.match(prints)
        body, status = result.stdout.rstrip().rsplit(" ", 1)
        assert int(status) == int(expected["status"])
        assert json.loads(body)["error"].startswith(expected["start"])


def test_python_example(stack, capsys, monkeypatch):
    (code,) = examples("python")
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(compile(code.replace(DOCS_URL, stack.web_url), str(PAGE), "exec"), namespace)
    digit, sureness = ast.literal_eval(capsys.readouterr().out)  # what the example printed: (7, 0.9...)
    assert digit == 7 and 0.5 < sureness <= 1
    with pytest.raises(ValueError, match=r"^415: the body is text"):
        namespace["read_digit"]("requirements.txt")
