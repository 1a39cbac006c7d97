"""The drawing a /predict request carries, as the bytes to forward to TorchServe.

Accepted: the data URL as text with any Content-Type (the page), raw image bytes, JSON {"image": ...}
(passed through: the handler reads JSON), a form field image=... (jQuery's $.post(url, {image})), and
multipart/form-data with a file or text field named image (curl -F, requests' files=, HTML upload forms).
Forms are decoded by aiohttp's own request.post(): the charset the client declares (UTF-8 by default),
percent-escapes decoded in it, the body size capped by client_max_size (413) while it is read.
"""

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import FileField

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


class BodyError(ValueError):
    """A body we cannot read the drawing from: the client's mistake, answered 400."""


async def drawing(request: web.Request) -> bytes:
    if request.content_type == MULTIPART:
        return await _multipart_field(request)
    body = await request.read()
    # jQuery's $.post(url, dataURL) labels the bare data URL (or JSON) as a form: it is not one.
    if request.content_type == FORM and not body.lstrip().startswith((b"data:", b"{")):
        fields = await _post(request)
        if "image" in fields:
            return _as_bytes(fields["image"])
    return body


async def _multipart_field(request: web.Request) -> bytes:
    fields = await _post(request)
    if "image" not in fields:
        raise BodyError("multipart body has no field named image: send -F image=@digit.png")
    value = fields["image"]
    if isinstance(value, FileField):
        with value.file:  # a spooled temporary file: closed (and removed) once read
            return value.file.read()
    return _as_bytes(value)


async def _post(request: web.Request):
    try:
        return await request.post()
    except UnicodeDecodeError as e:  # a ValueError too: say which charset did not fit
        raise BodyError(f"the form is not valid {e.encoding} text (declare its charset)") from None
    except LookupError:
        raise BodyError(f"unknown charset {request.charset!r}") from None
    except (ValueError, HttpProcessingError) as e:
        # Malformed multipart: no boundary, nested parts, a part without a name, broken part headers.
        raise BodyError(f"malformed form body: {_first_line(e)}") from None


def _as_bytes(value: str | bytes | bytearray) -> bytes:
    # A data URL is ASCII; anything else is forwarded as UTF-8 and refused by the handler with a 4xx.
    return value.encode() if isinstance(value, str) else bytes(value)


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip()  # aiohttp puts the status first in str()
    return (text.splitlines() or [type(error).__name__])[0]
