"""Request bodies as the OpenAI SDK sends them: JSON, or multipart form data whose nested objects arrive as
bracket fields (`input_reference[image_url]`, `video[id]`, `characters[][id]`: the SDK's "brackets" array format)
or as JSON text; urlencoded forms the same. Every shape becomes one nested dict of fields plus the uploaded files.
"""

from __future__ import annotations

import json
import re

from fastapi import Request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class BodyError(ValueError):
    """A body that cannot be read; (message, param, code, status)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value", status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


async def read_body(request: Request, max_bytes: int) -> tuple[dict, dict]:
    """(fields, uploads); uploads map field -> (filename, bytes). Raises BodyError."""
    ctype = request.headers.get("content-type", "")
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise BodyError("Content-Length is not a number", code="invalid_request") from None
    if length > max_bytes:
        raise BodyError(f"request larger than {max_bytes} bytes", code="too_large", status=413)
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return await _form(request, max_bytes)
    raw = await request.body()
    if len(raw) > max_bytes:
        raise BodyError(f"request larger than {max_bytes} bytes", code="too_large", status=413)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BodyError("request body is not valid JSON or multipart form data", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BodyError("request body must be a JSON object", code="invalid_json")
    return body, {}


async def _form(request: Request, max_bytes: int) -> tuple[dict, dict]:
    try:
        form = await request.form(max_part_size=max_bytes)
    except Exception as e:              # starlette's MultiPartException and friends: a malformed form
        raise BodyError(f"malformed form data: {e}", code="invalid_request") from None
    fields, uploads = {}, {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            if len(data) > max_bytes:
                raise BodyError(f"upload {key} larger than {max_bytes} bytes", key, "too_large", 413)
            uploads[key] = (value.filename or key, data)
        else:
            assign(fields, key, _maybe_json(value))
    return fields, uploads


def _maybe_json(value: str):
    """Multipart clients may send nested objects ({"id": ...}) or arrays as JSON text; decode those."""
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def assign(root: dict, key: str, value) -> None:
    """Sets a bracket field into nested dicts and lists: a[b]=1 -> {"a": {"b": 1}}; a[][id]=x a[][id]=y ->
    {"a": [{"id": x}, {"id": y}]} (a new list item starts when the last one already has that key)."""
    m = _KEY.match(key)
    if not m or not m.group(2):
        root[key] = value
        return
    parts = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
    node = root
    for i, part in enumerate(parts):
        last, nxt = i == len(parts) - 1, (parts[i + 1] if i + 1 < len(parts) else None)
        fresh = (lambda: []) if nxt == "" or (nxt or "").isdigit() else dict
        if isinstance(node, list):
            if part == "" or part.isdigit():
                index = len(node) if part == "" else int(part)
                if part == "" and not last and node and isinstance(node[-1], dict) and nxt not in node[-1]:
                    index = len(node) - 1          # fill the open item: a[][id]=x a[][name]=n is one item
                if index > len(node):
                    raise BodyError(f"form field {key!r} skips list positions", key)
                if last:
                    node[index:index + 1] = [value]
                    return
                if index == len(node):
                    node.append(fresh())
                node = node[index]
                continue
            raise BodyError(f"form field {key!r} mixes a list and named fields", key)
        if not isinstance(node, dict):
            raise BodyError(f"form field {key!r} nests inside a plain value", key)
        if last:
            node[part] = value
            return
        if part not in node:
            node[part] = fresh()
        node = node[part]
