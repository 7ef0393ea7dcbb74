"""An HTTP service compatible with the OpenAI Videos API (`client.videos` of the official SDK), plus a web page.

The app only validates, stores jobs and serves files; rendering happens in worker processes (worker.py) that
share the job store. Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}}. Background
threads of the app process (started with it) expire old videos, collect garbage, measure the disk and deliver
webhooks, so no worker ever waits on any of that.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cinegen import defaults
from cinegen.config import check_prompt, parse_size
from cinegen.server import schema as S
from cinegen.server.bodies import BodyError, read_body
from cinegen.server.catalog import (
    EXTENSION_SECONDS,
    OPENAI_SECONDS,
    OPENAI_SIZES,
    Catalog,
    ModelSpec,
    batches,
    model_family,
    render_size,
    size_check,
    size_multiple,
)
from cinegen.server.limits import Gate, RateLimit
from cinegen.server.store import JobStore, video_object
from cinegen.server.worker import remove_outputs, video_dir

__all__ = ["ModelSpec", "ServerSettings", "create_app", "load_api_keys"]
log = logging.getLogger(__name__)
POLL_AFTER_MS = "500"
VARIANTS = {"video": ("video.mp4", "video/mp4"), "thumbnail": ("thumbnail.webp", "image/webp"),
            "spritesheet": ("spritesheet.jpg", "image/jpeg")}


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    models: dict[str, ModelSpec] = field(default_factory=dict)
    default_model: str = "cinegen-default"
    aliases: dict[str, str] = field(default_factory=dict)    # API model name -> local model (sora-2 -> default)
    api_keys: dict[str, str] = field(default_factory=dict)     # key -> owner; empty = local single-user mode
    max_upload_bytes: int = 50 * 1024 * 1024
    database: str | None = None        # postgresql://... to share one queue between machines; None = SQLite file
    workers: int = 1                   # render workers serving the queue (for start estimates)
    batch: int = defaults.BATCH        # the most jobs each renders in one batched call (for start estimates)
    max_active_jobs: int = 16          # queued + rendering jobs per key
    rate_limit: RateLimit = field(default_factory=RateLimit)
    ttl_seconds: int = 7 * 24 * 3600   # a finished video's files are deleted this long after creation
    disk_quota_bytes: int | None = None   # new jobs are refused while the data directory holds more
    upload_max_age: float = 24 * 3600.0   # unreferenced uploads and temp files older than this are deleted
    housekeeping_every: float = 30.0
    queue_view_ttl: float = 0.5        # queue places and estimates may be this many seconds old
    webhook_url: str | None = None
    webhook_secret: str | None = None     # "whsec_<base64>" or a plain string, as the SDK's unwrap takes it

    @property
    def store_location(self) -> str | Path:
        return self.database or Path(self.data_dir) / "jobs.sqlite"

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.models, self.default_model, self.aliases)

    def batches(self, key: tuple[str, str, str]) -> bool:
        """Whether the workers batch queued jobs of a store.like_key (model, render size, seconds)."""
        spec = self.models.get(key[0])
        return spec is not None and batches(spec.path, float(key[2]))


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_
        self.headers = headers


def load_api_keys(config_file: Path | None) -> dict[str, str]:
    """Keys from a JSON file {"keys": {"<key>": "<owner>"}} and/or CINEGEN_API_KEYS="key:owner,key2:owner2"."""
    keys: dict[str, str] = {}
    if config_file:
        keys.update(json.loads(Path(config_file).read_text()).get("keys", {}))
    for item in filter(None, os.environ.get("CINEGEN_API_KEYS", "").split(",")):
        key, _, owner = item.partition(":")
        keys[key.strip()] = owner.strip() or key.strip()
    return keys


def check_settings(settings: ServerSettings) -> None:
    """Every size a model offers must be one it renders (checked from its files' metadata: a cinegen model's
    safetensors headers, a Diffusers folder's configs; no weights are read), and every alias must name a served
    model."""
    for name, spec in settings.models.items():
        check = size_check(spec.path)
        for size in spec.sizes if check is not None else ():
            try:
                check(*parse_size(size))
            except ValueError as e:
                raise ValueError(f"model {name} offers size {size}, which it cannot render: {e}") from None
    for alias, target in settings.aliases.items():
        if target not in settings.models:
            raise ValueError(f"model alias {alias}={target}: no model named {target!r}; served: {sorted(settings.models)}")


def create_app(settings: ServerSettings) -> FastAPI:
    check_settings(settings)
    store = JobStore(settings.store_location)

    @asynccontextmanager
    async def lifespan(app_):
        from cinegen.server.housekeeping import background_threads
        stop = threading.Event()
        threads = background_threads(settings, store, app_.state, stop)
        yield
        stop.set()
        for t in threads:
            t.join(timeout=10)

    app = FastAPI(title="cinegen", version="0.2.0", lifespan=lifespan,
                  description="OpenAI Videos API compatible text-to-video service (a drop-in for client.videos)")
    app.state.settings, app.state.store, app.state.disk_used = settings, store, 0
    app.state.queue_view = QueueView(store, settings.queue_view_ttl)
    if not settings.api_keys:
        log.warning("no API keys configured: local single-user mode, every request is the same user")
    _install_error_handlers(app)
    _install_routes(app, settings, store)
    app.add_middleware(Gate, limit=settings.rate_limit, identify=lambda headers, client: _bucket(settings, headers, client))
    return app


def _bucket(settings: ServerSettings, headers: dict, client: str) -> str:
    key = _bearer(headers.get("authorization", ""))
    return "key:" + settings.api_keys[key] if key in settings.api_keys else "addr:" + client


def _bearer(auth: str) -> str:
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def _error(status: int, message: str, param=None, code=None, type_="invalid_request_error", headers=None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_, e: APIError):
        return _error(e.status, e.message, e.param, e.code, e.type, e.headers)

    @app.exception_handler(BodyError)
    async def body_error(_, e: BodyError):
        return _error(e.status, e.message, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error(400, f"invalid request: {first.get('msg', 'bad input')}", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, e: StarletteHTTPException):
        return _error(e.status_code, str(e.detail), type_="invalid_request_error" if e.status_code < 500 else "server_error")

    @app.exception_handler(Exception)
    async def unexpected(_, e: Exception):
        log.exception("unhandled error")
        return _error(500, "internal server error", type_="server_error")


# --- Request checks ---

def _owner(request: Request, settings: ServerSettings) -> str:
    if not settings.api_keys:
        return "local"
    key = _bearer(request.headers.get("authorization", ""))
    if key not in settings.api_keys:
        raise APIError(401, "invalid or missing API key (Authorization: Bearer <key>)", code="invalid_api_key")
    return settings.api_keys[key]


def _prompt(fields: dict) -> str:
    prompt = fields.get("prompt")
    try:
        check_prompt(prompt)
    except ValueError as e:
        raise APIError(400, str(e), "prompt", "invalid_value") from None
    return prompt


def _model(fields: dict, settings: ServerSettings) -> tuple[str, str, ModelSpec]:
    """(name as asked, local model, its spec)."""
    name = fields.get("model") or "sora-2"
    try:
        if not isinstance(name, str):                  # a JSON object here is unhashable
            raise KeyError(name)
        local = settings.catalog.resolve(name)
    except KeyError:
        raise APIError(400, f"unknown model {name!r}; available: {settings.catalog.names()}", "model",
                       "invalid_value") from None
    return name, local, settings.models[local]


def _check_mode(spec: ModelSpec | None, name: str, mode: str) -> None:
    """A job's mode must be one its model can do: a 400 naming those it can, before anything is stored (None: a
    source video's model that is no longer served; its worker refuses it)."""
    if spec is not None and not spec.can(mode):
        raise APIError(400, f"model {name} cannot do {mode!r}; it can do: {', '.join(spec.available_modes)}",
                       "model", "unsupported_mode")


def _default_size(name: str, spec: ModelSpec, settings: ServerSettings) -> str:
    """OpenAI's default (720x1280) for an OpenAI model name, as a Sora app expects; a local model's own first size
    when it is named directly."""
    return spec.sizes[0] if name in settings.models else OPENAI_SIZES[0]


def _choice(fields: dict, key: str, allowed: tuple[str, ...], default: str, model: str) -> str:
    value = fields.get(key)
    value = default if value in (None, "") else str(value)
    if value not in allowed:
        raise APIError(400, f"{key} {value!r} is not supported by {model}; allowed: {list(allowed)}", key, "invalid_value")
    return value


def _check_room(settings: ServerSettings, store: JobStore, owner: str, state) -> None:
    """The per-key concurrent-job limit and the disk quota, before a job is stored."""
    if settings.disk_quota_bytes is not None and state.disk_used >= settings.disk_quota_bytes:
        raise APIError(429, f"the service's disk quota ({settings.disk_quota_bytes} bytes) is full; delete videos or "
                       "wait for old ones to expire", code="insufficient_quota", type_="insufficient_quota",
                       headers={"x-should-retry": "false"})
    active = store.active_jobs(owner)
    if active >= settings.max_active_jobs:
        wait = max(1, math.ceil(store.recent_duration() or 10))
        raise APIError(429, f"this key has {active} jobs queued or rendering; at most {settings.max_active_jobs}. "
                       f"Try again in {wait}s.", code="rate_limit_exceeded", type_="requests",
                       headers={"retry-after": str(wait)})


def _save_upload(settings: ServerSettings, data: bytes, kind: str, param: str) -> str:
    """Validates an uploaded image or video by decoding it, then stores it under data_dir/uploads."""
    from cinegen.io.video import read_image, read_video
    folder = Path(settings.data_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.{'img' if kind == 'image' else 'vid'}"
    path.write_bytes(data)
    try:
        read_image(path) if kind == "image" else read_video(path, max_frames=2)
    except Exception:                    # PIL and PyAV raise many kinds on junk; any of them means unreadable
        path.unlink(missing_ok=True)
        raise APIError(400, f"{param} is not a readable {kind}", param, "invalid_file") from None
    return str(path)


def _data_url_bytes(value: dict, param: str) -> bytes:
    url = value.get("image_url") or ""
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        raise APIError(400, f"{param} must be a file upload or {{'image_url': 'data:...;base64,...'}} (this service "
                       "fetches no URLs)", param, "invalid_value")
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param} holds invalid base64 data", param, "invalid_value") from None


def _image_reference(settings: ServerSettings, fields: dict, uploads: dict) -> str | None:
    if "input_reference" in uploads:
        return _save_upload(settings, uploads["input_reference"][1], "image", "input_reference")
    ref = fields.get("input_reference")
    if ref in (None, ""):
        return None
    if not isinstance(ref, dict):
        raise APIError(400, "input_reference must be an image upload or {'image_url': 'data:...'}", "input_reference",
                       "invalid_value")
    return _save_upload(settings, _data_url_bytes(ref, "input_reference"), "image", "input_reference")


def _character(store: JobStore, fields: dict, owner: str, spec: ModelSpec, model: str) -> str | None:
    """The image of the one character a request names (characters: [{"id": ...}]), or None."""
    chars = fields.get("characters")
    if chars in (None, "", []):
        return None
    if isinstance(chars, dict):                      # a form that sent characters[0][id] only: one item
        chars = [chars]
    if not isinstance(chars, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in chars):
        raise APIError(400, "characters must be a list of {\"id\": \"char_...\"}", "characters", "invalid_value")
    if len(chars) > 1:
        raise APIError(400, f"{model} takes one character per video (it conditions on one image); got {len(chars)}",
                       "characters", "invalid_value")
    if not spec.can("animate"):
        raise APIError(400, f"{model} cannot use characters: it has no image conditioning", "characters",
                       "unsupported")
    row = store.get_character(chars[0]["id"], owner)
    if row is None:
        raise APIError(400, f"character {chars[0]['id']!r} not found", "characters", "invalid_value")
    return row["path"]


# --- Responses ---

def _get_own(store: JobStore, vid: str, owner: str) -> dict:
    row = store.get(vid, owner)
    if row is None:                                  # another owner's video is as invisible as a missing one
        raise APIError(404, f"video {vid!r} not found", "video_id", "not_found")
    return row


class QueueView:
    """The queue state behind places and estimates, read at most every `ttl` seconds however many clients poll."""

    def __init__(self, store: JobStore, ttl: float):
        self.store, self.ttl = store, ttl
        self._state, self._at = None, 0.0
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._state is None or time.monotonic() - self._at >= self.ttl:
                self._state, self._at = self.store.queue_state(), time.monotonic()
            return self._state


def _video(row: dict, view: QueueView, settings: ServerSettings) -> dict:
    """The video object, with a queued job's place in line and an estimate of when it starts (the jobs ahead
    grouped into the batches the workers will render them in)."""
    out = video_object(row)
    if row["status"] == "queued":
        out["queue_position"], out["estimated_start_at"] = view.get().place(
            row["owner"], row["seq"], settings.workers, time.time(), settings.batch, settings.batches)
    return out


def _expired(row: dict, status: int = 404, param: str = "video_id") -> APIError:
    """A video past its expires_at: the object still answers (status as it finished), its files do not."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row["expires_at"]))
    return APIError(status, f"video {row['id']!r} expired at {when}: its files are deleted", param, "expired")


def _respond(row: dict, view: QueueView, settings: ServerSettings) -> JSONResponse:
    headers = {"openai-poll-after-ms": POLL_AFTER_MS} if row["status"] in ("queued", "in_progress") else {}
    return JSONResponse(_video(row, view, settings), headers=headers)


# --- Routes ---

def _install_routes(app: FastAPI, settings: ServerSettings, store: JobStore) -> None:
    bodies = S.request_bodies(settings.catalog)
    _install_video_routes(app, settings, store, bodies)
    _install_derived_routes(app, settings, store, bodies)
    _install_character_routes(app, settings, store, bodies)


def _install_video_routes(app: FastAPI, settings: ServerSettings, store: JobStore, bodies: dict) -> None:
    """The page, create, list, retrieve, delete and download."""
    def respond(row):
        return _respond(row, app.state.queue_view, settings)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse((Path(__file__).parent / "static" / "index.html").read_text())

    @app.post("/v1/videos", openapi_extra=bodies["create"], responses=S.responses(S.Video, S.BAD, S.UPLOAD))
    async def create_video(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await read_body(request, settings.max_upload_bytes)
        prompt = _prompt(fields)
        name, local, spec = _model(fields, settings)
        size = _choice(fields, "size", spec.allowed_sizes, _default_size(name, spec, settings), name)
        seconds = _choice(fields, "seconds", spec.allowed_seconds, OPENAI_SECONDS[0], name)
        character = _character(store, fields, owner, spec, name)
        wants_image = character or "input_reference" in uploads or fields.get("input_reference") not in (None, "")
        _check_mode(spec, name, "animate" if wants_image else "text")
        _check_room(settings, store, owner, app.state)
        reference = _image_reference(settings, fields, uploads)
        if character and reference:
            raise APIError(400, f"{name} conditions on one image: give input_reference or a character, not both",
                           "characters", "invalid_value")
        params = {"input_reference": reference} if reference else {"character": character} if character else {}
        return respond(store.create(owner, name, prompt, seconds, size, "create", params, ttl=settings.ttl_seconds,
                                    backend=local, render_size=render_size(spec, size, size_multiple(spec))))

    @app.get("/v1/models", responses=S.responses(S.ModelList))
    def list_models(request: Request):
        """The local models this service serves (OpenAI's names map onto them), with what each can do."""
        _owner(request, settings)
        return {"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "cinegen", "family": model_family(spec.path),
             "modes": list(spec.available_modes), "sizes": list(spec.sizes), "seconds": list(spec.seconds)}
            for name, spec in settings.models.items()]}

    @app.get("/v1/videos", responses=S.responses(S.VideoList, S.BAD))
    def list_videos(request: Request, after: str | None = None, limit: int = 20, order: str = "desc"):
        owner = _owner(request, settings)
        if not 1 <= limit <= 100:
            raise APIError(400, "limit must be between 1 and 100", "limit", "invalid_value")
        if order not in ("asc", "desc"):
            raise APIError(400, "order must be 'asc' or 'desc'", "order", "invalid_value")
        try:
            rows, more = store.list(owner, after, limit, order)
        except KeyError:
            raise APIError(400, f"after={after!r} is not one of your videos", "after", "invalid_value") from None
        data = [_video(r, app.state.queue_view, settings) for r in rows]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": more}

    @app.get("/v1/videos/{video_id}", responses=S.responses(S.Video, S.NOT_FOUND))
    def retrieve_video(video_id: str, request: Request):
        return respond(_get_own(store, video_id, _owner(request, settings)))

    @app.delete("/v1/videos/{video_id}", responses=S.responses(S.VideoDeleted, S.NOT_FOUND))
    def delete_video(video_id: str, request: Request):
        """Deletes a video of any status: a rendering one stops within one sampling step and writes nothing more;
        queued jobs made from it fail, naming it."""
        owner = _owner(request, settings)
        _get_own(store, video_id, owner)
        store.delete(video_id, owner)
        remove_outputs(settings.data_dir, video_id)
        for dep in store.dependents(video_id):
            store.fail(dep["id"], "source_deleted", f"source video {video_id} was deleted before this job started")
        return {"id": video_id, "deleted": True, "object": "video.deleted"}

    @app.get("/v1/videos/{video_id}/content", response_class=FileResponse, responses=S.CONTENT_RESPONSES)
    def download(video_id: str, request: Request, variant: str = "video"):
        row = _get_own(store, video_id, _owner(request, settings))
        if variant not in VARIANTS:
            raise APIError(400, f"variant must be one of {list(VARIANTS)}", "variant", "invalid_value")
        if row["status"] == "expired":
            raise _expired(row)
        if row["status"] != "completed":
            raise APIError(404, f"video {video_id!r} is {row['status']}; content exists while it is completed",
                           "video_id", "not_ready")
        name, media = VARIANTS[variant]
        path = video_dir(settings.data_dir, video_id) / name
        if not path.is_file():                       # expired, or deleted, between the row read and now
            if row["expires_at"] is not None and row["expires_at"] <= time.time():
                raise _expired(row)
            raise APIError(404, f"video {video_id!r} not found", "video_id", "not_found")
        return FileResponse(path, media_type=media)


def _install_derived_routes(app: FastAPI, settings: ServerSettings, store: JobStore, bodies: dict) -> None:
    """Jobs made from an existing video: remix (same model, size and length, new prompt), extensions (the video
    object's `seconds` is the stitched total, as OpenAI reports it) and edits."""
    def respond(row):
        return _respond(row, app.state.queue_view, settings)

    def completed_source(vid: str, owner: str, param: str) -> dict:
        src = _get_own(store, vid, owner)
        if src["status"] == "expired":
            raise _expired(src, 400, param)
        if src["status"] != "completed":
            raise APIError(400, f"video {vid!r} is {src['status']}, not completed", param, "invalid_value")
        return src

    def source_from(fields, uploads, owner) -> tuple[str, dict | None]:
        """The source clip of an edit/extension: an uploaded video or {"id": <completed video>}."""
        if "video" in uploads:
            return _save_upload(settings, uploads["video"][1], "video", "video"), None
        ref = fields.get("video")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise APIError(400, "video must be an uploaded file or {\"id\": \"video_...\"}", "video", "invalid_value")
        src = completed_source(ref["id"], owner, "video")
        return str(video_dir(settings.data_dir, src["id"]) / "video.mp4"), src

    def shape_of(src: dict | None, path: str, fields: dict, spec: ModelSpec, name: str) -> tuple[str, str, str]:
        """(size, render size, seconds) of a source: a stored video's own, or an upload's size when the model
        offers it (else the size asked for, default the model's) and its length in whole seconds."""
        if src is not None:
            return src["size"], src.get("render_size") or src["size"], src["seconds"]
        from cinegen.io.video import read_video
        frames, fps = read_video(path)
        own = f"{frames.shape[2]}x{frames.shape[1]}"
        size = own if own in spec.allowed_sizes else _choice(fields, "size", spec.allowed_sizes,
                                                             _default_size(name, spec, settings), name)
        return size, render_size(spec, size, size_multiple(spec)), str(max(1, round(len(frames) / fps)))

    def derived_source(fields, uploads, owner, name: str, local: str, spec: ModelSpec, mode: str) -> Derived:
        """The source of an extension or edit, checked for `mode`: a stored video keeps its own model, backend,
        size and length; an upload takes the model the request names."""
        path, src = source_from(fields, uploads, owner)
        if src is not None:
            name, local = src["model"], src["backend"]
        _check_mode(settings.models.get(local), name, mode)
        size, rsize, seconds = shape_of(src, path, fields, spec, name)
        return Derived(path, name, local, size, rsize, seconds, src and src["id"])

    @app.post("/v1/videos/{video_id}/remix", openapi_extra=bodies["remix"],
              responses=S.responses(S.Video, S.BAD, S.NOT_FOUND, S.UPLOAD))
    async def remix(video_id: str, request: Request):
        owner = _owner(request, settings)
        fields, _ = await read_body(request, settings.max_upload_bytes)
        src = completed_source(video_id, owner, "video_id")
        prompt = _prompt(fields)
        _check_room(settings, store, owner, app.state)
        _check_mode(settings.models.get(src["backend"] or src["model"]), src["model"], "edit")
        source = str(video_dir(settings.data_dir, video_id) / "video.mp4")
        return respond(store.create(owner, src["model"], prompt, src["seconds"], src["size"], "remix",
                                    {"source": source}, remixed_from=video_id, ttl=settings.ttl_seconds,
                                    backend=src["backend"], render_size=src["render_size"]))

    @app.post("/v1/videos/extensions", openapi_extra=bodies["extend"],
              responses=S.responses(S.Video, S.BAD, S.NOT_FOUND, S.UPLOAD))
    async def extensions(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await read_body(request, settings.max_upload_bytes)
        prompt = _prompt(fields)
        name, local, spec = _model(fields, settings)
        extra = _choice(fields, "seconds", tuple(dict.fromkeys(spec.seconds + EXTENSION_SECONDS)), "", name)
        _check_room(settings, store, owner, app.state)
        s = derived_source(fields, uploads, owner, name, local, spec, "extend")
        total = str(int(float(s.seconds)) + int(extra))       # OpenAI reports an extension's stitched length
        return respond(store.create(owner, s.model, prompt, total, s.size, "extend",
                                    {"source": s.path, "extra_seconds": extra}, remixed_from=s.remixed_from,
                                    ttl=settings.ttl_seconds, backend=s.backend, render_size=s.render_size))

    @app.post("/v1/videos/edits", openapi_extra=bodies["edit"],
              responses=S.responses(S.Video, S.BAD, S.NOT_FOUND, S.UPLOAD))
    async def edits(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await read_body(request, settings.max_upload_bytes)
        prompt = _prompt(fields)
        name, local, spec = _model(fields, settings)
        _check_room(settings, store, owner, app.state)
        s = derived_source(fields, uploads, owner, name, local, spec, "edit")
        return respond(store.create(owner, s.model, prompt, s.seconds, s.size, "edit", {"source": s.path},
                                    remixed_from=s.remixed_from, ttl=settings.ttl_seconds, backend=s.backend,
                                    render_size=s.render_size))


class Derived(NamedTuple):
    """What an extension or edit is made from (derived_source)."""
    path: str                      # the source clip's file
    model: str                     # the job's model name and local backend
    backend: str
    size: str
    render_size: str
    seconds: str
    remixed_from: str | None       # the stored video's id; None for an upload


def _install_character_routes(app: FastAPI, settings: ServerSettings, store: JobStore, bodies: dict) -> None:
    """Characters: a named subject from a short video (its middle frame) or an image, reused in later videos with
    characters=[{"id": ...}] (cinegen's models condition their first frame on it)."""
    def public(row: dict) -> dict:
        return {"id": row["id"], "name": row["name"], "created_at": row["created_at"]}

    @app.post("/v1/videos/characters", openapi_extra=bodies["character"],
              responses=S.responses(S.Character, S.BAD, S.UPLOAD))
    async def create_character(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await read_body(request, settings.max_upload_bytes)
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 80:
            raise APIError(400, "name must be a non-empty string of at most 80 characters", "name", "invalid_value")
        if "video" not in uploads:
            raise APIError(400, "video must be an uploaded video or image file", "video", "invalid_value")
        return public(store.create_character(owner, name.strip(), _character_image(settings, uploads["video"][1])))

    @app.get("/v1/videos/characters/{character_id}", responses=S.responses(S.Character, S.NOT_FOUND))
    def get_character(character_id: str, request: Request):
        row = store.get_character(character_id, _owner(request, settings))
        if row is None:
            raise APIError(404, f"character {character_id!r} not found", "character_id", "not_found")
        return public(row)


def _character_image(settings: ServerSettings, data: bytes) -> str:
    """The still that stands for a character: the middle frame of an uploaded video, or an uploaded image."""
    from PIL import Image

    from cinegen.io.files import atomic_write
    from cinegen.io.video import read_image, read_video
    folder = Path(settings.data_dir) / "characters"
    folder.mkdir(parents=True, exist_ok=True)
    upload = folder / f".{uuid.uuid4().hex}.upload"
    upload.write_bytes(data)
    try:
        try:
            frames, _ = read_video(upload)
            still = frames[len(frames) // 2]
        except Exception:
            still = read_image(upload)
    except Exception:
        raise APIError(400, "video is not a readable video or image", "video", "invalid_file") from None
    finally:
        upload.unlink(missing_ok=True)
    path = folder / f"{uuid.uuid4().hex}.png"
    atomic_write(path, lambda tmp: Image.fromarray(still).save(tmp, format="PNG"))
    return str(path)
