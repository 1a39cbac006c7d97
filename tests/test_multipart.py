"""Uploads as ordinary clients send them, against the real stack: multipart/form-data from curl -F and
from requests' files=, with a file or a data URL text field, and forms in any charset. The same limits
and the same JSON 4xx answers as every other body form; a malformed body is a 400, never a 500."""

import base64
import json
import subprocess

import pytest
import requests

from tests.stack import ROOT

DIGIT = ROOT / "docs" / "digit.png"  # a 7 drawn on a 64x64 canvas
DATA_URL = "data:image/png;base64," + base64.b64encode(DIGIT.read_bytes()).decode()
MAX_BODY = 1024 * 1024


def curl(*args: str) -> tuple[int, dict]:
    """curl as a user runs it: the answer's status and its JSON."""
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


def assert_reads_seven(status: int, answer: dict) -> None:
    assert status == 200, answer
    assert answer["digit"] == 7 and len(answer["probabilities"]) == 10, answer


def test_curl_uploads_a_file(stack):
    assert_reads_seven(*curl("-F", f"image=@{DIGIT}", stack.web_url + "/predict"))


def test_curl_sends_a_data_url_as_a_text_field(stack):
    # --form-string: with -F, curl would read the ';' in the data URL as one of its own options.
    assert_reads_seven(*curl("--form-string", f"image={DATA_URL}", stack.web_url + "/predict"))


def test_curl_uploads_to_a_version(stack):
    status, answer = curl("-F", f"image=@{DIGIT};type=image/png", stack.web_url + "/predict?version=1.0")
    assert_reads_seven(status, answer)
    assert answer["version"] == "1.0"


@pytest.mark.parametrize(
    "files, data",
    [
        ({"image": DIGIT.open("rb")}, None),  # requests.post(url, files={"image": f})
        ({"image": ("digit.png", DIGIT.read_bytes(), "image/png")}, {"note": "an HTML form's other fields"}),
        ({"image": (None, DATA_URL)}, None),  # a text part, no filename
        (None, {"image": DATA_URL}),  # requests' data= is a urlencoded form, not multipart
    ],
    ids=["file", "file-with-other-fields", "data-url-field", "urlencoded-form"],
)
def test_requests_uploads(stack, files, data):
    response = requests.post(stack.web_url + "/predict", files=files, data=data, timeout=30)
    assert_reads_seven(response.status_code, response.json())


def test_an_oversized_file_is_413_json_and_the_next_upload_works(stack):
    big = DIGIT.read_bytes() + b"\0" * MAX_BODY  # a PNG with a tail: only its size is wrong
    response = requests.post(stack.web_url + "/predict", files={"image": ("big.png", big)}, timeout=30)
    assert response.status_code == 413 and "too large" in response.json()["error"]
    assert_reads_seven(*curl("-F", f"image=@{DIGIT}", stack.web_url + "/predict"))


def test_a_text_file_is_415_json(stack, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Shopping list: milk, eggs, 7 apples.\n")
    status, answer = curl("-F", f"image=@{notes}", stack.web_url + "/predict")
    assert status == 415 and "neither a data URL nor base64" in answer["error"], answer


@pytest.mark.parametrize(
    "files, status, words",
    [
        ({"picture": ("digit.png", DIGIT.read_bytes())}, 400, "no field named image"),
        ({"image": ("empty.png", b"")}, 400, "empty body"),
        ({"image": ("digit.gif", b"GIF89a not really")}, 415, "image"),
    ],
    ids=["no-image-field", "empty-file", "broken-image"],
)
def test_a_wrong_upload_is_a_clear_4xx(stack, files, status, words):
    response = requests.post(stack.web_url + "/predict", files=files, timeout=30)
    assert response.status_code == status and words in response.json()["error"], response.text


def test_malformed_multipart_is_400_json(stack):
    # What the fuzzer sent: a boundary line followed by no part headers (aiohttp raised InvalidHeader: 500).
    boundary = "e448867ce9e2065bc11d9151d4800b6d"
    body = f"--{boundary}\r\n1.48e-226--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = requests.post(stack.web_url + "/predict", data=body, headers=headers, timeout=30)
    assert response.status_code == 400 and "malformed form body" in response.json()["error"]
    no_boundary = requests.post(
        stack.web_url + "/predict",
        data=b"image=1",
        headers={"Content-Type": "multipart/form-data"},
        timeout=30,
    )
    assert no_boundary.status_code == 400 and "error" in no_boundary.json()
    # A part in an encoding no one knows: aiohttp raised RuntimeError (a plain-text 500).
    odd = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"\r\n'
        f"Content-Transfer-Encoding: rot13\r\n\r\nqngn:vzntr\r\n--{boundary}--\r\n"
    ).encode()
    response = requests.post(stack.web_url + "/predict", data=odd, headers=headers, timeout=30)
    assert response.status_code == 400 and "Content-Transfer-Encoding" in response.json()["error"], (
        response.text
    )


@pytest.mark.parametrize(
    "body, content_type, status, words",
    [
        # The fuzzer's find: a form field outside Latin-1 (percent-encoded UTF-8) was a plain-text 500.
        (
            b"image=%E2%82%AC%F0%9F%98%80",
            "application/x-www-form-urlencoded",
            415,
            "neither an image nor text",
        ),
        ("image=€".encode(), "application/x-www-form-urlencoded", 415, "neither an image nor text"),
        # Not text in its charset, or an unknown charset: not a form after all, so the body as it is.
        (b"image=\xff\xfe", "application/x-www-form-urlencoded", 415, "neither an image nor text"),
        (
            b"image=abc",
            "application/x-www-form-urlencoded; charset=no-such-charset",
            415,
            "neither a data URL",
        ),
    ],
    ids=["percent-encoded-utf8", "raw-utf8", "not-utf8", "unknown-charset"],
)
def test_forms_outside_latin1_are_4xx_json_not_500(stack, body, content_type, status, words):
    response = requests.post(
        stack.web_url + "/predict", data=body, headers={"Content-Type": content_type}, timeout=30
    )
    assert response.status_code == status and words in response.json()["error"], response.text


def test_raw_image_bytes_labelled_a_form_are_read(stack):
    # curl --data-binary @digit.png sends application/x-www-form-urlencoded: PNG bytes, not UTF-8 text.
    assert_reads_seven(*curl("--data-binary", f"@{DIGIT}", stack.web_url + "/predict"))


def test_a_form_in_a_declared_charset_is_decoded_in_it(stack):
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1"}
    response = requests.post(
        stack.web_url + "/predict", data=f"image={DATA_URL}", headers=headers, timeout=30
    )
    assert_reads_seven(response.status_code, response.json())
