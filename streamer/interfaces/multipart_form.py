"""A `multipart/form-data` body → its fields and its one file, by `python-multipart`'s parser."""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header


class FormError(ValueError):
    """The body is no multipart form."""


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def one(self, name: str) -> str | None:
        values = self.fields.get(name) or self.fields.get(f"{name}[]")
        return values[-1] if values else None

    def many(self, name: str) -> list[str]:
        return self.fields.get(f"{name}[]", []) + self.fields.get(name, [])


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


def parse_form(content_type: str, body: bytes) -> Form:
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError("the body must be multipart/form-data with a boundary")
    form = Form()
    part = _Part()
    header_field = bytearray()
    header_value = bytearray()

    def on_header_end() -> None:
        part.headers[header_field.decode("latin-1").lower()] = header_value.decode("utf-8", errors="replace")
        header_field.clear()
        header_value.clear()

    def on_part_end() -> None:
        nonlocal part
        _add_part(form, part)
        part = _Part()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": lambda data, start, end: header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: header_value.extend(data[start:end]),
            "on_header_end": on_header_end,
            "on_part_data": lambda data, start, end: part.data.extend(data[start:end]),
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # the parser raises its own error types, all meaning a malformed body
        raise FormError(f"malformed multipart body: {exc}") from exc
    return form


def _add_part(form: Form, part: _Part) -> None:
    _, params = parse_options_header(part.headers.get("content-disposition", ""))
    name = params.get(b"name", b"").decode("utf-8", errors="replace")
    if not name:
        return
    if b"filename" in params:
        filename = params[b"filename"].decode("utf-8", errors="replace")
        form.files[name] = UploadedFile(filename, part.headers.get("content-type", "application/octet-stream"), bytes(part.data))
    else:
        form.fields.setdefault(name, []).append(part.data.decode("utf-8", errors="replace"))
