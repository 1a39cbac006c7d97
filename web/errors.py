"""Every error a client gets is JSON {"error": ...}: the one helper that writes it, and the middleware that
makes aiohttp's own errors (404, 405, 413) say it the same way."""

from aiohttp import web


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def json_errors(max_body: int):
    """The middleware, for an app whose bodies are at most `max_body` bytes (its client_max_size)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 413:
                return error(413, f"the body is too large (at most {max_body} bytes)")
            response = error(exc.status, exc.reason)
            if "Allow" in exc.headers:  # a 405 says which methods the route takes
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    return middleware
