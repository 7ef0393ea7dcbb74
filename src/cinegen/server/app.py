"""An HTTP service compatible with the OpenAI Videos API (`client.videos` of the official SDK), plus a web page.

The app only validates, stores jobs and serves files; rendering happens in worker processes (worker.py) that
share the SQLite job store. Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cinegen.config import check_prompt, parse_size
from cinegen.server.store import JobStore, video_object
from cinegen.server.worker import remove_outputs, video_dir

log = logging.getLogger(__name__)
POLL_AFTER_MS = "500"
VARIANTS = {"video": ("video.mp4", "video/mp4"), "thumbnail": ("thumbnail.webp", "image/webp"),
            "spritesheet": ("spritesheet.jpg", "image/jpeg")}


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    sizes: tuple[str, ...] = ("64x64", "96x64", "64x96", "128x128")
    seconds: tuple[str, ...] = ("1", "2", "4", "8")
    modes: tuple[str, ...] | None = None       # requests.MODES keys it can do (None: all, a cinegen model)
    family: str = "cinegen"


def check_mode(settings: "ServerSettings", model: str, mode: str) -> None:
    """A job's mode must be one its model can do: a 400 naming those it can, before anything is stored."""
    modes = settings.models[model].modes
    if modes is not None and mode not in modes:
        raise APIError(400, f"model {model} cannot do {mode!r}; it can do: {', '.join(modes)}", "model",
                       "unsupported_mode")


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    models: dict[str, ModelSpec] = field(default_factory=dict)
    default_model: str = "cinegen-default"
    api_keys: dict[str, str] = field(default_factory=dict)     # key -> owner; empty = local single-user mode
    max_upload_bytes: int = 50 * 1024 * 1024
    database: str | None = None        # postgresql://... to share one queue between machines; None = SQLite file

    @property
    def store_location(self) -> str | Path:
        return self.database or Path(self.data_dir) / "jobs.sqlite"


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_


def load_api_keys(config_file: Path | None) -> dict[str, str]:
    """Keys from a JSON file {"keys": {"<key>": "<owner>"}} and/or CINEGEN_API_KEYS="key:owner,key2:owner2"."""
    keys: dict[str, str] = {}
    if config_file:
        keys.update(json.loads(Path(config_file).read_text()).get("keys", {}))
    for item in filter(None, os.environ.get("CINEGEN_API_KEYS", "").split(",")):
        key, _, owner = item.partition(":")
        keys[key.strip()] = owner.strip() or key.strip()
    return keys


def check_model_sizes(settings: ServerSettings) -> None:
    """Every size a model offers must be one its geometry renders: checked at start-up from the files' metadata
    (a cinegen model's safetensors headers, a Diffusers folder's configs; no weights are read)."""
    from cinegen.backends.diffusers import DiffusersBackend, FolderInfo, is_diffusers_folder
    from cinegen.geometry import read_geometry
    for name, spec in settings.models.items():
        if (Path(spec.path) / "dit.safetensors").is_file():
            check = read_geometry(spec.path).check_size
        elif is_diffusers_folder(spec.path):
            check = DiffusersBackend(FolderInfo.read(spec.path)).check_size
        else:
            continue
        for size in spec.sizes:
            try:
                check(*parse_size(size))
            except ValueError as e:
                raise ValueError(f"model {name} offers size {size}, which it cannot render: {e}") from None


def create_app(settings: ServerSettings) -> FastAPI:
    check_model_sizes(settings)
    app = FastAPI(title="cinegen", version="0.1.0", description="OpenAI Videos API compatible text-to-video service")
    store = JobStore(settings.store_location)
    app.state.settings, app.state.store = settings, store
    if not settings.api_keys:
        log.warning("no API keys configured: local single-user mode, every request is the same user")
    _install_error_handlers(app)
    _install_routes(app, settings, store)
    return app


def _error(status: int, message: str, param=None, code=None, type_="invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_, e: APIError):
        return _error(e.status, e.message, e.param, e.code, e.type)

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


# --- Request parsing ---

async def _form_or_json(request: Request, settings: ServerSettings) -> tuple[dict, dict]:
    """(fields, uploads) from multipart/form-data or JSON; uploads map field -> (filename, bytes)."""
    ctype = request.headers.get("content-type", "")
    if int(request.headers.get("content-length") or 0) > settings.max_upload_bytes:
        raise APIError(413, f"request larger than {settings.max_upload_bytes} bytes", code="too_large")
    if ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded"):
        form = await request.form(max_part_size=settings.max_upload_bytes)
        fields, uploads = {}, {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                if len(data) > settings.max_upload_bytes:
                    raise APIError(413, f"upload {key} larger than {settings.max_upload_bytes} bytes", key, "too_large")
                uploads[key] = (value.filename or key, data)
            else:
                fields[key] = _maybe_json(value)
        return fields, uploads
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise APIError(400, "request body is not valid JSON or multipart form data", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return body, {}


def _maybe_json(value: str):
    """Multipart clients send nested objects ({"id": ...}) as JSON text; decode those."""
    if value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _owner(request: Request, settings: ServerSettings) -> str:
    if not settings.api_keys:
        return "local"
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if key not in settings.api_keys:
        raise APIError(401, "invalid or missing API key (Authorization: Bearer <key>)", code="invalid_api_key")
    return settings.api_keys[key]


def _check_fields(fields: dict, settings: ServerSettings, seconds_default: str = "2") -> tuple[str, str, str, str]:
    prompt = fields.get("prompt")
    try:
        check_prompt(prompt)
    except ValueError as e:
        raise APIError(400, str(e), "prompt", "invalid_value") from None
    model = fields.get("model") or settings.default_model
    if not isinstance(model, str) or model not in settings.models:     # a JSON object here is unhashable
        raise APIError(400, f"unknown model {model!r}; available: {sorted(settings.models)}", "model", "invalid_value")
    spec = settings.models[model]
    size = str(fields.get("size") or spec.sizes[0])
    if size not in spec.sizes:
        raise APIError(400, f"size {size!r} is not supported by {model}; allowed: {list(spec.sizes)}", "size", "invalid_value")
    seconds = str(fields.get("seconds") or seconds_default)
    if seconds not in spec.seconds:
        raise APIError(400, f"seconds {seconds!r} is not supported by {model}; allowed: {list(spec.seconds)}", "seconds",
                       "invalid_value")
    return prompt, model, size, seconds


def _save_upload(settings: ServerSettings, data: bytes, kind: str, param: str) -> str:
    """Validates an uploaded image or video by decoding it, then stores it under data_dir/uploads."""
    from cinegen.io.video import read_image, read_video
    folder = Path(settings.data_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.{'img' if kind == 'image' else 'vid'}"
    path.write_bytes(data)
    try:
        read_image(path) if kind == "image" else read_video(path, max_frames=2)
    except ValueError:
        path.unlink(missing_ok=True)
        raise APIError(400, f"{param} is not a readable {kind}", param, "invalid_file") from None
    return str(path)


def _data_url_bytes(value: dict, param: str) -> bytes:
    url = value.get("image_url") or ""
    if not url.startswith("data:") or "," not in url:
        raise APIError(400, f"{param} must be a file upload or {{'image_url': 'data:...;base64,...'}}", param, "invalid_value")
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param} holds invalid base64 data", param, "invalid_value") from None


# --- OpenAPI request bodies (routes parse JSON or multipart themselves; these document both for clients/fuzzers) ---

def _body(properties: dict, required: list[str]) -> dict:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": schema}}}}


_STR = {"type": "string"}
_VIDEO_REF = {"type": "object", "properties": {"id": _STR}, "required": ["id"]}
CREATE_BODY = _body({"prompt": _STR, "model": _STR, "size": _STR, "seconds": _STR,
                     "input_reference": {"type": "string", "format": "binary"}}, ["prompt"])
REMIX_BODY = _body({"prompt": _STR}, ["prompt"])
EXTEND_BODY = _body({"prompt": _STR, "seconds": _STR, "video": _VIDEO_REF}, ["prompt", "seconds", "video"])
EDIT_BODY = _body({"prompt": _STR, "video": _VIDEO_REF}, ["prompt", "video"])


# --- Routes ---

def _get_own(store: JobStore, vid: str, owner: str) -> dict:
    row = store.get(vid, owner)
    if row is None:                                  # another owner's video is as invisible as a missing one
        raise APIError(404, f"video {vid!r} not found", "video_id", "not_found")
    return row


def _respond(row: dict, status: int = 200) -> JSONResponse:
    headers = {"openai-poll-after-ms": POLL_AFTER_MS} if row["status"] in ("queued", "in_progress") else {}
    return JSONResponse(video_object(row), status_code=status, headers=headers)


def _source_from(settings: ServerSettings, store: JobStore, fields: dict, uploads: dict, owner: str) -> tuple[str, str | None]:
    """The source clip of an edit/extension: an uploaded video or {"id": <completed video>}."""
    if "video" in uploads:
        return _save_upload(settings, uploads["video"][1], "video", "video"), None
    ref = fields.get("video")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        raise APIError(400, "video must be an uploaded file or {\"id\": \"video_...\"}", "video", "invalid_value")
    src = _get_own(store, ref["id"], owner)
    if src["status"] != "completed":
        raise APIError(400, f"video {ref['id']!r} is not completed", "video", "invalid_value")
    return str(video_dir(settings.data_dir, src["id"]) / "video.mp4"), src["id"]


def _install_routes(app: FastAPI, settings: ServerSettings, store: JobStore) -> None:
    _install_video_routes(app, settings, store)
    _install_derived_routes(app, settings, store)


def _install_video_routes(app: FastAPI, settings: ServerSettings, store: JobStore) -> None:
    """The page, create, list, retrieve, delete and download."""
    get_own, respond = (lambda vid, owner: _get_own(store, vid, owner)), _respond

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse((Path(__file__).parent / "static" / "index.html").read_text())

    @app.post("/v1/videos", openapi_extra=CREATE_BODY)
    async def create_video(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await _form_or_json(request, settings)
        prompt, model, size, seconds = _check_fields(fields, settings)
        check_mode(settings, model, "animate" if fields.get("input_reference") or "input_reference" in uploads
                   else "text")
        params = {}
        if "input_reference" in uploads:
            params["input_reference"] = _save_upload(settings, uploads["input_reference"][1], "image", "input_reference")
        elif isinstance(fields.get("input_reference"), dict):
            params["input_reference"] = _save_upload(settings, _data_url_bytes(fields["input_reference"], "input_reference"),
                                                     "image", "input_reference")
        return respond(store.create(owner, model, prompt, seconds, size, "create", params))

    @app.get("/v1/models")
    def list_models(request: Request):
        _owner(request, settings)
        return {"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "cinegen", "family": spec.family,
             "modes": list(spec.modes) if spec.modes is not None else None, "sizes": list(spec.sizes),
             "seconds": list(spec.seconds)} for name, spec in settings.models.items()]}

    @app.get("/v1/videos")
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
        data = [video_object(r) for r in rows]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": more}

    @app.get("/v1/videos/{video_id}")
    def retrieve_video(video_id: str, request: Request):
        return respond(get_own(video_id, _owner(request, settings)))

    @app.delete("/v1/videos/{video_id}")
    def delete_video(video_id: str, request: Request):
        owner = _owner(request, settings)
        get_own(video_id, owner)
        store.delete(video_id, owner)
        remove_outputs(settings.data_dir, video_id)
        return {"id": video_id, "deleted": True, "object": "video.deleted"}

    @app.get("/v1/videos/{video_id}/content")
    def download(video_id: str, request: Request, variant: str = "video"):
        row = get_own(video_id, _owner(request, settings))
        if variant not in VARIANTS:
            raise APIError(400, f"variant must be one of {list(VARIANTS)}", "variant", "invalid_value")
        if row["status"] != "completed":
            raise APIError(404, f"video {video_id!r} is {row['status']}; content exists once it is completed",
                           "video_id", "not_ready")
        name, media = VARIANTS[variant]
        return FileResponse(video_dir(settings.data_dir, video_id) / name, media_type=media)



def _install_derived_routes(app: FastAPI, settings: ServerSettings, store: JobStore) -> None:
    """Jobs made from an existing video: remix (SDEdit of a completed video), extensions and edits."""
    get_own, respond = (lambda vid, owner: _get_own(store, vid, owner)), _respond

    def source_from(fields, uploads, owner):
        return _source_from(settings, store, fields, uploads, owner)

    @app.post("/v1/videos/{video_id}/remix", openapi_extra=REMIX_BODY)
    async def remix(video_id: str, request: Request):
        owner = _owner(request, settings)
        fields, _ = await _form_or_json(request, settings)
        src = get_own(video_id, owner)
        if src["status"] != "completed":
            raise APIError(400, f"video {video_id!r} is not completed", "video_id", "invalid_value")
        prompt, model, _, _ = _check_fields({**fields, "model": src["model"], "size": src["size"],
                                             "seconds": src["seconds"]}, settings)
        check_mode(settings, model, "edit")
        source = str(video_dir(settings.data_dir, video_id) / "video.mp4")
        return respond(store.create(owner, model, prompt, src["seconds"], src["size"], "remix", {"source": source},
                                    remixed_from=video_id))

    @app.post("/v1/videos/extensions", openapi_extra=EXTEND_BODY)
    async def extensions(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await _form_or_json(request, settings)
        prompt, model, size, seconds = _check_fields(fields, settings)
        check_mode(settings, model, "extend")
        source, source_id = source_from(fields, uploads, owner)
        if source_id:
            size = store.get(source_id)["size"]
        return respond(store.create(owner, model, prompt, seconds, size, "extend",
                                    {"source": source, "extra_seconds": seconds}, remixed_from=source_id))

    @app.post("/v1/videos/edits", openapi_extra=EDIT_BODY)
    async def edits(request: Request):
        owner = _owner(request, settings)
        fields, uploads = await _form_or_json(request, settings)
        prompt, model, size, seconds = _check_fields(fields, settings)
        check_mode(settings, model, "edit")
        source, source_id = source_from(fields, uploads, owner)
        if source_id:
            src = store.get(source_id)
            size, seconds = src["size"], src["seconds"]
        return respond(store.create(owner, model, prompt, seconds, size, "edit", {"source": source},
                                    remixed_from=source_id))
