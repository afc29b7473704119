"""HTML forms generated from pydantic models, so a plugin's ``Settings`` gets a setup form with no
console code: the model's JSON schema says each field's type, description, bounds and choices, and
``SecretStr`` fields (``format: password``) become password inputs whose value is never sent back.

``parse_form`` turns the submitted strings back into the values the model validates (pydantic's lax
mode converts "80" to 80); validation itself stays the model's, so the form and the admin API refuse
exactly the same settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

__all__ = ["FormField", "errors_by_field", "form_fields", "parse_form"]


@dataclass
class FormField:
    name: str
    label: str
    widget: str  # text | password | number | checkbox | select | json
    required: bool
    description: str | None = None
    value: str = ""
    checked: bool = False
    choices: list[str] = field(default_factory=list)
    error: str | None = None
    has_stored_secret: bool = False
    nullable: bool = False
    attrs: dict[str, str] = field(default_factory=dict)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The field's own schema (a ``$ref`` followed, ``anyOf [X, null]`` unwrapped) and whether
    null is allowed."""
    nullable = False
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        nullable = len(rest) < len(options)
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            schema = {**rest[0], **merged}
    ref = schema.get("$ref")
    if ref:
        target = defs.get(ref.rsplit("/", 1)[-1], {})
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, nullable


def _widget(schema: dict[str, Any]) -> str:
    if schema.get("format") == "password" or schema.get("writeOnly"):
        return "password"
    if "enum" in schema or "const" in schema:
        return "select"
    kind = schema.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind == "string":
        return "text"
    return "json"  # objects, arrays, unions: edited as JSON


def _display(value: Any, widget: str) -> str:
    if value is None:
        return ""
    if widget == "json":
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def form_fields(
    model: type[BaseModel],
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    *,
    stored_secrets: frozenset[str] = frozenset(),
) -> list[FormField]:
    """One field per model field, in declaration order, filled with ``values`` (never a secret's)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    values = values or {}
    errors = errors or {}
    out = []
    for name, raw in schema.get("properties", {}).items():
        prop, nullable = _resolve(raw, defs)
        widget = _widget(prop)
        f = FormField(
            name=name,
            label=prop.get("title") or name.replace("_", " ").capitalize(),
            widget=widget,
            required=name in required,
            description=prop.get("description") or _docstring(model, name),
            error=errors.get(name),
            nullable=nullable,
        )
        if widget == "select":
            f.choices = [str(c) for c in prop.get("enum", [prop.get("const")])]
        if widget == "number":
            f.attrs["step"] = "1" if prop.get("type") == "integer" else "any"
            for key, attr in (("minimum", "min"), ("maximum", "max")):
                if key in prop:
                    f.attrs[attr] = str(prop[key])
        if widget in ("text", "password"):
            for key, attr in (("minLength", "minlength"), ("maxLength", "maxlength")):
                if key in prop:
                    f.attrs[attr] = str(prop[key])
        if widget == "password":
            # A secret is never echoed back: the field stays empty, and empty keeps the stored one.
            f.has_stored_secret = name in stored_secrets
            if f.has_stored_secret:
                f.required = False
        else:
            current = values[name] if name in values else _default(model, name)
            if widget == "checkbox":
                f.checked = bool(current)
            else:
                f.value = _display(current, widget)
        out.append(f)
    return out


def _default(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields.get(name)
    if info is None or info.is_required():
        return None
    return info.get_default(call_default_factory=True)


def _docstring(model: type[BaseModel], name: str) -> str | None:
    info = model.model_fields.get(name)
    return info.description if info is not None else None


def parse_form(
    model: type[BaseModel], form: Mapping[str, str], *, editing: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """(values for the model, errors the form itself found). An empty secret is left out (kept when
    editing, 'required' when creating); an empty field is null where null is allowed, else left
    out (its default applies); JSON fields are parsed."""
    out: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for f in form_fields(model):
        raw = form.get(f.name)
        if f.widget == "checkbox":
            out[f.name] = raw is not None
            continue
        text = (raw or "").strip() if f.widget != "password" else (raw or "")
        if text == "":
            if f.widget == "password":
                continue
            if f.nullable:
                out[f.name] = None
            elif f.required and editing:
                out[f.name] = ""  # emptied on purpose: the model says what it needs
            # else left out: the default applies, or the model says "Field required" beside it
            continue
        if f.widget == "json":
            try:
                out[f.name] = json.loads(text)
            except ValueError as exc:
                problems[f.name] = f"not valid JSON: {exc}"
            continue
        out[f.name] = text
    return out, problems


def errors_by_field(details: list[dict[str, Any]] | None, prefix: str = "") -> dict[str, str]:
    """``[{"field": "settings.x", "message"}]`` (the API's 422 details) as ``{"x": message}``."""
    out: dict[str, str] = {}
    for d in details or []:
        name = str(d.get("field", ""))
        if prefix and name.startswith(prefix + "."):
            name = name[len(prefix) + 1 :]
        name = name.split(".", 1)[0] if name else "(form)"
        out.setdefault(name, str(d.get("message", "invalid")))
    return out
