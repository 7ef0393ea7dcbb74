"""The service's OpenAPI description: response objects as pydantic models (documentation only: routes build
their JSON themselves), request bodies with the enums and limits the routes enforce, and every status code a
route can answer with OpenAI's error envelope."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from cinegen import defaults
from cinegen.server.catalog import EXTENSION_SECONDS, Catalog

STATUSES = ("queued", "in_progress", "completed", "failed")      # the SDK's Video.status: no other value


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str]
    code: Optional[str]


class ErrorResponse(BaseModel):
    error: ErrorDetail


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    id: str
    object: Literal["video"]
    status: Literal[STATUSES]
    progress: int
    created_at: int
    completed_at: Optional[int]
    expires_at: Optional[int] = Field(description="When the files are deleted; past it the object keeps its status "
                                      "and /content answers 404 with code `expired`")
    model: str
    prompt: Optional[str]
    remixed_from_video_id: Optional[str]
    seconds: str
    size: str
    rendered_size: str
    error: Optional[VideoError]
    queue_position: Optional[int] = None
    estimated_start_at: Optional[int] = None
    warnings: Optional[list[str]] = None      # cinegen's: words the model never trained on, what it changed


class VideoList(BaseModel):
    object: Literal["list"]
    data: list[Video]
    first_id: Optional[str]
    last_id: Optional[str]
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    deleted: bool
    object: Literal["video.deleted"]


class Model(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    family: str
    modes: list[str]
    sizes: list[str]
    seconds: list[str]


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Character(BaseModel):
    id: str
    name: str
    created_at: int


def _err(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


COMMON = {401: _err("Missing or invalid API key"), 429: _err("Rate limit or concurrent-job limit reached "
                                                            "(Retry-After says when to try again)")}
NOT_FOUND = {404: _err("No such object for this key")}
BAD = {400: _err("Invalid request (the message names the bad value)")}
UPLOAD = {413: _err("Request or upload too large")}
MEDIA = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}


def responses(ok_model, *groups: dict) -> dict:
    out = {200: {"model": ok_model, "description": "OK"}} if ok_model else {}
    for g in (COMMON, *groups):
        out.update(g)
    return out


CONTENT_RESPONSES = {200: {"description": "The file", "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                                                  for m in MEDIA.values()}},
                     **COMMON, **BAD, **NOT_FOUND}


def _body(properties: dict, required: list[str]) -> dict:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": schema}}}}


def request_bodies(catalog: Catalog) -> dict[str, dict]:
    """openapi_extra of each job-creating route, with the enums of this service's models, sizes and lengths."""
    sizes = sorted({s for m in catalog.models.values() for s in m.allowed_sizes})
    seconds = sorted({s for m in catalog.models.values() for s in m.allowed_seconds}, key=float)
    prompt = {"type": "string", "minLength": 1, "maxLength": defaults.MAX_PROMPT_CHARS}
    ref = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    source = {"oneOf": [ref, {"type": "string", "format": "binary"}]}
    image_ref = {"oneOf": [{"type": "string", "format": "binary"},
                           {"type": "object", "properties": {"image_url": {"type": "string"}}, "required": ["image_url"]}]}
    return {
        "create": _body({"prompt": prompt, "model": {"type": "string", "enum": catalog.names()},
                         "size": {"type": "string", "enum": sizes}, "seconds": {"type": "string", "enum": seconds},
                         "input_reference": image_ref, "characters": {"type": "array", "maxItems": 1, "items": ref}},
                        ["prompt"]),
        "remix": _body({"prompt": prompt}, ["prompt"]),
        "extend": _body({"prompt": prompt, "seconds": {"type": "string", "enum": sorted(
            {*EXTENSION_SECONDS, *seconds}, key=float)}, "video": source}, ["prompt", "seconds", "video"]),
        "edit": _body({"prompt": prompt, "video": source}, ["prompt", "video"]),
        "character": _body({"name": {"type": "string", "minLength": 1, "maxLength": 80},
                            "video": {"type": "string", "format": "binary"}}, ["name", "video"]),
    }
