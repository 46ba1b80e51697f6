"""OpenAI-style error objects: every refused request gets one, never a traceback.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "n", "code": null}}
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """A request the server refuses, with the HTTP status and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first validation problem as one line, and the field it concerns. Of a union's
    members, one the value has the type of speaks first ("at most 16 items", not "should be a
    valid string" for a list)."""
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = next((e for e in errors if not str(e.get("type", "")).endswith("_type")), errors[0])
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    # pydantic names the union member tried ("str", "list[str]"); users only need the field path.
    location = [part for part in location
                if not part.startswith(("list[", "str", "int", "function", "constrained-"))]
    param = ".".join(location) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if kind == "extra_forbidden":
        return f"unsupported field {param!r}", param
    if kind == "missing":
        if param is None:
            return "the request body is missing; send a JSON object", None
        return f"missing required field {param!r}", param
    message = str(first.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return (f"{param}: {message}" if param else message), param


async def api_error_handler(_request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.param, exc.code)


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = describe_validation(exc)
    return error_response(400, message, param)


async def http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
        status, str(exc.detail))
    response = error_response(status, message)
    response.headers.update(exc.headers or {})  # a 405 names the allowed methods (Allow)
    return response


async def unexpected_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Last resort: a bug must still answer with an error object and leave the server running."""
    return error_response(500, f"internal error ({type(exc).__name__}); the server keeps running")
