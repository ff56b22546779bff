"""``/ui``: the dashboard, a static page served from the package (no CDN, no build step) that reads the
gateway's own APIs. Its files are listed once at start; nothing else under ``/ui/static`` is served."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.errors import NotFound

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The page loads only its own files and talks only to its own origin; nothing inline runs.
SECURITY = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class UIRoutes:
    """The dashboard's page and files."""

    def __init__(self) -> None:
        root = resources.files("llmgate.server").joinpath("static")
        self._files: dict[str, tuple[bytes, str]] = {}
        for path, relative in _walk(root, ""):
            suffix = "." + relative.rsplit(".", 1)[-1] if "." in relative else ""
            if suffix in TYPES:
                self._files[relative] = (path.read_bytes(), TYPES[suffix])

    async def page(self, request: Request) -> Response:
        """``GET /ui``."""
        body, media_type = self._files["ui.html"]
        return Response(body, media_type=media_type, headers=SECURITY)

    async def static(self, request: Request) -> Response:
        """``GET /ui/static/{path}``: one of the packaged files, or 404."""
        found = self._files.get(request.path_params["path"])
        if found is None:
            raise NotFound("no such dashboard file", param="path")
        body, media_type = found
        return Response(body, media_type=media_type, headers=SECURITY)


def _walk(folder: resources.abc.Traversable, prefix: str) -> list[tuple[resources.abc.Traversable, str]]:
    found = []
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(_walk(entry, f"{name}/"))
        elif entry.is_file():
            found.append((entry, name))
    return found
