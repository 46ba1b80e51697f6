"""The playground: its page at "/" and its scripts and styles under /static (no CDN)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

STATIC = files("lantern.serve") / "static"

router = APIRouter()


def static_files() -> StaticFiles:
    """The app for /static (a mount: FastAPI before 0.137 drops mounts of an included router)."""
    return StaticFiles(directory=str(STATIC))


@router.get("/", include_in_schema=False)
async def playground() -> Response:
    return Response((STATIC / "index.html").read_text(encoding="utf-8"), media_type="text/html")
