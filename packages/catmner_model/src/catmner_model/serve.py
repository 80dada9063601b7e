"""`catmner serve MODEL`: a local page to try tweets, images and captions, and see what the model looked at.

A small server on Python's standard library (`http.server.ThreadingHTTPServer`) with plain HTML + JS kept
beside this module (``web/``); the page fetches nothing from the internet (no CDN: every byte it loads comes
from this server, and its Content-Security-Policy allows nothing else). Why not Gradio or FastAPI: Gradio is a
large dependency that loads assets from the internet by default, and FastAPI + uvicorn add two dependencies
for three routes; the standard library keeps the attack surface small and the install unchanged.

Routes: ``GET /`` (the page), ``GET /app.js``, ``GET /style.css``, ``GET /api/info`` (the model),
``POST /api/explain`` (JSON ``{"text", "caption"?, "image"?: base64 bytes}`` -> ``Predictor.explain``'s dict,
whose ``entities`` are exactly ``catmner predict``'s JSON). Safety:

- bound to 127.0.0.1 by default (use an SSH tunnel for a remote machine: docs/serve.md);
- an upload is capped (``max_upload_bytes``) and decoded by `images.decode_image`, the project's safe image
  path; its bytes go to a private temporary folder under a name the server makes: no path sent by the browser
  is ever read; a bad upload, a bad request or a bad tweet is a JSON ``{"error": ...}`` with status 400/413,
  shown on the page (never a 500 for bad input);
- requests whose Host header is not a local name are refused (DNS rebinding); POST must be JSON (no
  cross-site form posts);
- one forward pass at a time (a lock), the server stops cleanly on Ctrl-C (the temporary folder removed).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any

from catmner_model.errors import CatmnerError

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # decoded image bytes
MAX_TEXT_CHARS = 2000  # a tweet is 280 characters; longer text is refused with a message
THUMBNAIL_SIDE = 480  # the page shows the decoded image at most this wide / high
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_ASSETS = {"/": ("serve.html", "text/html"), "/app.js": ("serve.js", "text/javascript"),
           "/style.css": ("style.css", "text/css")}  # fmt: skip


class ServeError(CatmnerError):
    """A request the page can show as a message (bad upload, empty tweet, oversized body)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def asset(name: str) -> bytes:
    """A file of the page (``web/`` beside this module)."""
    return files("catmner_model").joinpath("web", name).read_bytes()


def thumbnail_data_url(image: Any) -> str:
    """The decoded RGB image, at most THUMBNAIL_SIDE px, as a JPEG ``data:`` URL (what the page draws on)."""
    im = image.copy()
    im.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class ExplainService:
    """The page's back end without HTTP: a Predictor, the upload folder, one forward pass at a time."""

    def __init__(self, predictor: Any, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES):
        self.predictor = predictor
        self.max_upload_bytes = int(max_upload_bytes)
        self.upload_dir = Path(tempfile.mkdtemp(prefix="catmner-serve-"))
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        cfg = self.predictor.config
        return {
            "model": "/".join(self.predictor.model_dir.resolve().parts[-2:]),
            "variant": cfg.variant,
            "visual_source": cfg.visual_source,
            "uses_images": bool(self.predictor.uses_images),
            "uses_captions": bool(self.predictor.uses_captions),
            "refined": getattr(self.predictor.model, "gates_i2t", None) is not None,
            "max_upload_bytes": self.max_upload_bytes,
        }

    def save_upload(self, encoded: str) -> tuple[Path, dict[str, Any]]:
        """Base64 image bytes -> a file in the upload folder (named by the server) and what the page shows."""
        from catmner_model.images import decode_image

        if len(encoded) > 4 * (self.max_upload_bytes // 3 + 2):
            raise ServeError(self._too_large(len(encoded) * 3 // 4), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ServeError("the upload is not base64 image data") from None
        if len(data) > self.max_upload_bytes:
            raise ServeError(self._too_large(len(data)), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        loaded = decode_image(data, "uploaded image")
        if not loaded.ok:
            raise ServeError(loaded.message)
        path = self.upload_dir / f"{loaded.sha256}.img"
        if not path.exists():
            path.write_bytes(data)
        shown = {
            "data_url": thumbnail_data_url(loaded.image),
            "width": loaded.image.width,
            "height": loaded.image.height,
            "sha256": loaded.sha256,
        }
        return path, shown

    def _too_large(self, n: int) -> str:
        return f"image is {n} bytes; this server accepts up to {self.max_upload_bytes} (--max-upload-mb)"

    def explain(self, request: dict[str, Any]) -> dict[str, Any]:
        """One page request -> ``{"result": Predictor.explain(...), "image": shown image or None, "notes"}``."""
        if not isinstance(request, dict):
            raise ServeError('expected a JSON object like {"text": "..."}')
        text, caption, image = request.get("text"), request.get("caption"), request.get("image")
        if not isinstance(text, str) or not text.strip():
            raise ServeError("type a tweet first")
        if len(text) > MAX_TEXT_CHARS:
            raise ServeError(f"the tweet is {len(text)} characters; the page takes up to {MAX_TEXT_CHARS}")
        if caption is not None and (not isinstance(caption, str) or len(caption) > MAX_TEXT_CHARS):
            raise ServeError(f"the caption must be text of at most {MAX_TEXT_CHARS} characters")
        if image is not None and not isinstance(image, str):
            raise ServeError("the image must be sent as base64 bytes")
        caption = caption if caption and caption.strip() else None
        notes = []
        path, shown = (None, None)
        if image:
            path, shown = self.save_upload(image)
            if not self.predictor.uses_images:
                notes.append("this model has no image path (its visual source is "
                             f"{self.predictor.config.visual_source}): the image was not used")  # fmt: skip
        if caption is not None and not self.predictor.uses_captions:
            notes.append("this model does not read captions: the caption was not used")
        if self.predictor.uses_captions and caption is None:
            notes.append("this model reads the image's caption: without one it used its no-caption token")
        with self.lock:
            result = self.predictor.explain(
                text, image=str(path) if path is not None and self.predictor.uses_images else None,
                caption=caption,
            )  # fmt: skip
        if result.get("truncated_words"):
            notes.append(f"{result['truncated_words']} words past the model's max_length were not read")
        # the exact text `catmner predict --text` prints for this input (its entities, json.dumps indent 2)
        predict_json = json.dumps(result["entities"], indent=2, ensure_ascii=False)
        return {"result": result, "predict_json": predict_json, "image": shown, "notes": notes}

    def close(self) -> None:
        shutil.rmtree(self.upload_dir, ignore_errors=True)


def make_handler(service: ExplainService, log: Callable[[str], None] | None = None) -> type:
    """The request handler class bound to ``service``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "catmner-serve"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            if log is not None:
                log(f"{self.address_string()} {format % args}")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8" if ctype.startswith("text") else ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json")

        def _local_host(self) -> bool:
            """Whether the Host header names this server locally (any name when the user chose to listen on
            every address with --host 0.0.0.0, after the warning)."""
            if self.server.server_address[0] in ("0.0.0.0", ""):
                return True
            host = (self.headers.get("Host") or "").strip()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return name in LOCAL_NAMES or name == self.server.server_address[0]

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not self._local_host():
                return self._json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"})
            route = self.path.split("?", 1)[0]
            if route == "/api/info":
                return self._json(HTTPStatus.OK, service.info())
            if route in _ASSETS:
                name, ctype = _ASSETS[route]
                return self._send(HTTPStatus.OK, asset(name), ctype)
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {route}"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._local_host():
                return self._json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"})
            if self.path.split("?", 1)[0] != "/api/explain":
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                return self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send JSON"})
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
            limit = 4 * (service.max_upload_bytes // 3 + 2) + 4 * MAX_TEXT_CHARS + 4096
            if length > limit:  # never read it: answer and close the connection
                self.close_connection = True
                return self._json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": service._too_large(length * 3 // 4)}
                )
            try:
                request = json.loads(self.rfile.read(length).decode("utf-8"))
                return self._json(HTTPStatus.OK, service.explain(request))
            except ServeError as exc:
                return self._json(exc.status, {"error": str(exc)})
            except (UnicodeDecodeError, json.JSONDecodeError):
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "the request is not JSON"})
            except CatmnerError as exc:  # e.g. PredictError: an empty tweet after tokenising
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc).splitlines()[0]})
            except Exception as exc:  # noqa: BLE001 - a bug, not bad input: say so on the page, keep serving
                if log is not None:
                    log(f"internal error: {type(exc).__name__}: {exc}")
                return self._json(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"error": f"internal error ({type(exc).__name__}: {exc})"},
                )

    return Handler


def make_server(service: ExplainService, host: str = "127.0.0.1", port: int = DEFAULT_PORT, log=None):
    """A ThreadingHTTPServer for ``service`` (port 0: a free port; ``server.server_address`` says which)."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(service, log))
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    server.daemon_threads = True
    return server


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    captioner: str | None = None,
    device: str | None = None,
    echo: Callable[[str], None] = print,
    verbose: bool = False,
) -> None:
    """Load the model, serve the page until Ctrl-C, then stop cleanly."""
    from catmner_model.predict import Predictor

    if host not in LOCAL_NAMES:
        echo(
            f"warning: listening on {host}: anyone who can reach it can use the model. For a remote machine "
            "prefer 127.0.0.1 and an SSH tunnel (docs/serve.md)"
        )
    service = ExplainService(Predictor(model_dir, device=device, captioner=captioner), max_upload_bytes)
    try:
        server = make_server(service, host, port, log=echo if verbose else None)
    except ServeError:
        service.close()
        raise
    name = f"[{host}]" if ":" in host else host
    echo(f"catmner serve: {model_dir} on http://{name}:{server.server_address[1]}/ (Ctrl-C stops)")
    sys.stdout.flush()
    stop_on_term = threading.current_thread() is threading.main_thread()
    if stop_on_term:  # `kill` (SIGTERM) stops as cleanly as Ctrl-C (SIGINT -> KeyboardInterrupt)
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if stop_on_term:
            signal.signal(signal.SIGTERM, previous)
        server.server_close()
        service.close()
    echo("catmner serve: stopped")
