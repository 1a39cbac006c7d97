"""Every error a client gets is JSON {"error": ...}: the one helper that writes it, and the middleware that
makes aiohttp's own errors (404, 405, 413), a body too slow (408) and our own failures (500, logged)
say it the same way."""

import logging

import aiohttp
from aiohttp import web

from web.uploads import BodyTimeout

log = logging.getLogger(__name__)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def json_errors(max_body: int):
    """The middleware, for an app whose bodies are at most `max_body` bytes (its client_max_size)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            return await handler(request)
        except BodyTimeout as exc:
            return error(408, str(exc))
        except aiohttp.ClientPayloadError:  # the body ended before its Content-Length, or bad chunks
            return error(400, "the request body was cut short or its transfer encoding is broken")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 413:
                return error(413, f"the body is too large (at most {max_body} bytes)")
            response = error(exc.status, exc.reason)
            if "Allow" in exc.headers:  # a 405 says which methods the route takes
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except (
            Exception
        ):  # our fault, not the client's: logged whole, answered in our words, never plain text
            log.exception("unexpected error on %s %s", request.method, request.path)
            return error(500, "internal error: the web app failed on this request (logged)")

    return middleware
