"""Campaign's metadata mechanism, in the shapes of Adobe's API docs ("Metadata mechanism", "Filtering"):

  GET /<endpoint>/resourceType/<name>
      {"content": {<field>: {"apiName", "label", "type", "resType", "resTarget"?, "values"?, "length"?},
                   <group>: {"apiName", "type": "item", "content": {...}}},
       "data": "/<endpoint>/<name>/", "filters": {"href": ".../resourceType/<name>/filters"},
       "href", "label", "name", "schema", "type": "item"}
  GET <filters.href>
      {<filter>: {"PKey", "category", "condition", "data": "/<endpoint>/<name>/<filter>?<param>=$value",
                  "formType", "fragmentName", "label", "metadata": {<param>: {"apiName", "type", ...}}}}

The profile's declared `cus*` extension fields are described on /profileAndServicesExt before any record
carries them (and never on /profileAndServices). A join link (`links` of a custom resource) is described
as `type: link` with its `resTarget`; records do not expand it.

`MetadataView.remove(...)` hides a field, a filter, a link or the identification key's field from what
is described (the data and the filters themselves keep working), so tests can break each piece a
Campaign admin might have skipped; `restore()` undoes every removal.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from .schema import CUSTOM_FIELD_PREFIX, Field, Resource

STANDARD = "profileAndServices"


@dataclass
class _Removed:
    fields: set[str] = field(default_factory=set)
    filters: set[str] = field(default_factory=set)
    key: bool = False


class MetadataView:
    def __init__(self) -> None:
        self._removed: dict[str, _Removed] = {}
        self._lock = threading.Lock()

    def remove(
        self,
        resource: str,
        *,
        field: str | None = None,
        filter: str | None = None,
        link: str | None = None,
        key: bool = False,
    ) -> None:
        """Hide from the described metadata of `resource`: a field (`location.city` for a group member),
        a filter, a link (by its name), or the field of its identification key."""
        with self._lock:
            removed = self._removed.setdefault(resource, _Removed())
            removed.fields.update(name for name in (field, link) if name)
            if filter:
                removed.filters.add(filter)
            removed.key = removed.key or key

    def restore(self) -> None:
        with self._lock:
            self._removed.clear()

    def _hidden(self, resource: Resource) -> tuple[set[str], set[str]]:
        with self._lock:
            removed = self._removed.get(resource.name, _Removed())
            fields = set(removed.fields) | ({resource.key} if removed.key and resource.key else set())
            return fields, set(removed.filters)

    def describe(
        self, resource: Resource, base: str, endpoint: str, written_custom_fields: list[str]
    ) -> dict[str, Any]:
        hidden, _ = self._hidden(resource)
        standard = endpoint == STANDARD
        content: dict[str, Any] = {}
        for name, spec in resource.fields.items():
            if name in ("PKey", "href") or name in hidden:
                continue
            if standard and name.startswith(CUSTOM_FIELD_PREFIX):
                continue  # extension fields exist only on /profileAndServicesExt
            content[name] = describe_field(spec)
        for group, members in resource.groups.items():
            if group in hidden:
                continue
            content[group] = {
                "apiName": group,
                "type": "item",
                "content": {
                    name: describe_field(spec)
                    for name, spec in members.items()
                    if f"{group}.{name}" not in hidden
                },
            }
        for name, link in resource.links.items():
            if name not in hidden:
                content[name] = describe_field(link)
        if not standard:
            # Fields a write brought in without a declaration (the emulator's profile accepts any cus*).
            for name in written_custom_fields:
                if name not in content and name not in hidden:
                    content[name] = {"apiName": name, "label": name, "type": "string", "resType": "string"}
        return {
            "content": content,
            "data": f"/{endpoint}/{resource.name}/",
            "filters": {"href": f"{base}/{endpoint}/resourceType/{resource.name}/filters"},
            "help": resource.label,
            "href": f"{base}/{endpoint}/{resource.name}/metadata",
            "label": resource.label,
            "mandatory": False,
            "name": resource.name,
            "readOnly": False,
            "schema": resource.schema,
            "type": "item",
        }

    def describe_filters(self, resource: Resource, endpoint: str) -> dict[str, Any]:
        _, hidden = self._hidden(resource)
        described = {}
        for name, spec in resource.filters.items():
            if name in hidden:
                continue
            parameter = {"apiName": spec.param, "label": spec.field or spec.param, "type": "string"}
            described[name] = {
                "PKey": f"@FL-{zlib.crc32(f'{resource.name}/{name}'.encode()):08x}",
                "category": "99_none",
                "condition": {"enabledIf": "true", "expr": _condition(spec.kind, spec.field)},
                "data": f"/{endpoint}/{resource.name}/{name}?{spec.param}=$value",
                "formType": "none",
                "fragmentName": "",
                "label": name,
                "metadata": {spec.param: parameter},
            }
        return described


def _condition(kind: str, field_name: str | None) -> str:
    if kind == "text":
        return "@email LIKE $value OR @lastName LIKE $value"
    if kind == "since":
        return "@lastModified >= $value"
    return f"@{field_name} = $value"


def describe_field(spec: Field) -> dict[str, Any]:
    res_type = {"long": "int64", "double": "double", "enumeration": "string", "link": "link"}.get(
        spec.kind, spec.kind
    )
    kind = "number" if spec.kind in ("long", "double") else spec.kind
    described: dict[str, Any] = {"apiName": spec.name, "label": spec.label, "type": kind, "resType": res_type}
    if spec.length is not None:
        described["length"] = spec.length
    if spec.values:
        described["values"] = {value: {"label": value} for value in spec.values}
    if spec.target:
        described["resTarget"] = spec.target
    if spec.policy:
        described["dataPolicy"] = spec.policy
    if spec.read_only:
        described["readOnly"] = True
    return described
