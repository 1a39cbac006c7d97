"""What a /predict or /read request asks: its ?version= and its drawing, as the bytes to forward to
TorchServe (asked); BodyError, answered 400, when either is not what the API takes.

Accepted: the data URL as text with any Content-Type (the page), raw image bytes, JSON {"image": ...}
(passed through: the handler reads JSON, "strokes" and all), a form field image=... (jQuery's
$.post(url, {image})), and multipart/form-data with a file or text field named image (curl -F, requests'
files=, HTML upload forms). Forms are decoded by aiohttp's own request.post(): the charset the client
declares (UTF-8 by default), percent-escapes decoded in it, the body size capped by client_max_size (413)
while it is read. A field is forwarded as UTF-8: a data URL is ASCII, anything else the handler refuses
with a 4xx. A form's field `strokes` (the pen's strokes, JSON) goes with its image as the JSON body the
handler reads, {"image", "strokes"}: the handler checks the strokes (handler/pen.py), here only that they
are JSON at all.
"""

import base64
import json

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import FileField

from handler.decode import looks_like_image
from web.registry import VERSION_RE
from web.uploads import body_deadline

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


class BodyError(ValueError):
    """A ?version= or body we cannot take the drawing from: the client's mistake, answered 400."""


async def asked(request: web.Request) -> tuple[str, bytes]:
    """The ?version= ("" for the default) and the drawing of a /predict or /read."""
    version = request.query.get("version", "")
    if version and not VERSION_RE.match(version):
        raise BodyError("version must be letters, digits, '.', '_' or '-' (at most 64)")
    body = await drawing(request)
    if not body.strip():
        raise BodyError("empty body: send the canvas as a data URL (canvas.toDataURL())")
    return version, body


async def drawing(request: web.Request) -> bytes:
    """The drawing's bytes, read within the request's deadline (web/uploads.py: BodyTimeout)."""
    async with body_deadline(request):
        return await _drawing(request)


async def _drawing(request: web.Request) -> bytes:
    if request.content_type == MULTIPART:
        return await _multipart_field(request)
    body = await request.read()
    # jQuery's $.post(url, dataURL) labels the bare data URL (or JSON) as a form: it is not one.
    if request.content_type == FORM and not body.lstrip().startswith((b"data:", b"{")):
        image = await _form_field(request)
        if image is not None:
            return image
    return body


async def _form_field(request: web.Request) -> bytes | None:
    """The image field of a urlencoded form (with its strokes); None if there is none, or the body is no
    text in its charset: `curl --data-binary @digit.png` labels the raw image as a form, and the raw body
    is what was meant."""
    try:
        fields = await request.post()
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError; LookupError: unknown charset
        return None
    return _with_strokes(_field(fields["image"]), fields.get("strokes")) if "image" in fields else None


async def _multipart_field(request: web.Request) -> bytes:
    fields = await _post(request)
    if "image" not in fields:
        raise BodyError("multipart body has no field named image: send -F image=@digit.png")
    return _with_strokes(_field(fields["image"]), fields.get("strokes"))


def _field(value) -> bytes:
    if isinstance(value, FileField):
        with value.file:  # a spooled temporary file: closed (and removed) once read
            return value.file.read()
    return _as_bytes(value)


def _with_strokes(image: bytes, strokes) -> bytes:
    """The image as it came, or with a strokes field beside it the JSON body {"image", "strokes"}: the
    image as its text (a data URL or base64), or base64 of its bytes; the strokes' JSON as it came, once
    it parses (a JSON text parsed whole can stand as a value: nothing in it reaches past its end)."""
    if strokes is None:
        return image
    try:
        text = _field(strokes).decode()
        json.loads(text)
    except UnicodeDecodeError:
        raise BodyError("strokes must be UTF-8 text: JSON [[[x, y, t], ...], ...]") from None
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise BodyError(
            "strokes is not JSON: send [[[x, y, t], ...], ...], the strokes in drawing order"
        ) from None
    if image.isascii() and not looks_like_image(image):
        shown = image.decode()
    else:
        shown = base64.b64encode(image).decode()
    return b'{"image":' + json.dumps(shown).encode() + b',"strokes":' + text.encode() + b"}"


async def _post(request: web.Request):
    try:
        return await request.post()
    except UnicodeDecodeError as e:  # a text part not in its charset (a ValueError too)
        raise BodyError(f"a text part of the form is not valid {e.encoding}") from None
    except LookupError:
        raise BodyError("a text part of the form declares an unknown charset") from None
    except (ValueError, HttpProcessingError):
        # Malformed multipart: no boundary, nested parts, a part without a name, broken part headers.
        raise BodyError("malformed form body: send multipart/form-data with a field named image") from None
    except RuntimeError:  # aiohttp's word for a part's unknown Content-Transfer-Encoding
        raise BodyError(
            "a part of the form has a Content-Transfer-Encoding other than base64, quoted-printable, binary, 8bit or 7bit"
        ) from None


def _as_bytes(value: str | bytes | bytearray) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
