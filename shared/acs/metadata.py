"""Campaign resource metadata, read the documented way (Campaign Standard API: "Metadata mechanism" and
"Filtering").

  GET <endpoint>/resourceType/<name>
      {"content": {<field>: {"apiName", "type", "resType", "resTarget"? (links), "values"? (enumerations),
                   "content"? (groups such as location)}}, "filters": {"href"}, "name", "schema", ...}
  GET <filters.href>
      {<filter>: {"data": "/<endpoint>/<name>/<filter>?<param>=$value", "metadata"?: {<param>: {...}},
                  "label", ...}}

`type` is the high-level type (string, number, link, collection, enumeration, ...), `resType` the
technical one (int64, double, ...). Filter names: Campaign Standard prefixes custom filters with `by`
(`byExternalId`); Campaign v8 uses the name given in the filter's "Filter name in REST API" as is, with
no prefix. `ResourceMetadata.find_filter` accepts either spelling and says which one it found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.acs.client import CampaignClient

_NUMBER_TYPES = frozenset({"number", "long", "int64", "int32", "short", "byte", "double", "float", "decimal"})
PARAMETER_SUFFIX = "_parameter"  # what Campaign appends to a custom filter's parameter name


@dataclass(frozen=True)
class CampaignField:
    path: str
    type: str  # the high-level type, lower case
    res_type: str
    target: str | None  # the resource a link or collection points at
    values: tuple[str, ...]  # enumeration values

    @property
    def kind(self) -> str:
        """What values the field takes: number, enumeration, string, boolean, date, datetime, memo, link,
        collection, item (a group of fields)."""
        if self.type in _NUMBER_TYPES or self.res_type in _NUMBER_TYPES:
            return "number"
        if self.values and self.type == "string":
            return "enumeration"
        return self.type


@dataclass(frozen=True)
class CampaignFilter:
    name: str
    data: (
        str  # Campaign's sample call: /profileAndServicesExt/profile/byExternalId?externalId_parameter=$value
    )
    parameters: frozenset[str]  # the query parameter names the filter takes

    def takes(self, parameter: str) -> bool:
        """Whether the filter takes the query parameter `parameter` (the metadata node may name a custom
        filter's parameter without the `_parameter` suffix the call carries)."""
        return parameter in self.parameters or parameter.removesuffix(PARAMETER_SUFFIX) in self.parameters


@dataclass(frozen=True)
class FilterMatch:
    filter: CampaignFilter
    exact: bool  # found under the name asked for (else under the other spelling, with or without `by`)


def filter_spellings(name: str) -> list[str]:
    """`byExternalId` → [byExternalId, externalId, ExternalId]; `externalId` → [externalId, byExternalId]."""
    if name.startswith("by") and name[2:3].isupper():
        bare = name[2:]
        return [name, bare[:1].lower() + bare[1:], bare]
    return [name, "by" + name[:1].upper() + name[1:]]


@dataclass(frozen=True)
class ResourceMetadata:
    resource: str  # <endpoint>/<name>, as the sync config names it
    description: Mapping[str, Any]
    filters: Mapping[str, CampaignFilter]

    @property
    def name(self) -> str:
        return str(self.description.get("name") or self.resource.split("/", 1)[1])

    def field(self, path: str) -> CampaignField | None:
        """A field by path (`location.city` is inside the `location` item), or None."""
        content: Any = self.description.get("content") or {}
        spec: Any = None
        for part in path.split("."):
            spec = content.get(part) if isinstance(content, Mapping) else None
            if not isinstance(spec, Mapping):
                return None
            content = spec.get("content")
        return CampaignField(
            path=path,
            type=str(spec.get("type") or "").lower(),
            res_type=str(spec.get("resType") or "").lower(),
            target=spec.get("resTarget"),
            values=tuple(spec.get("values") or ()),
        )

    def find_filter(self, name: str) -> FilterMatch | None:
        for spelling in filter_spellings(name):
            if spelling in self.filters:
                return FilterMatch(self.filters[spelling], exact=spelling == name)
        return None


def parse_filters(body: Any) -> dict[str, CampaignFilter]:
    """The filters' metadata (`GET <filters.href>`) by filter name."""
    filters = {}
    for name, spec in (body if isinstance(body, Mapping) else {}).items():
        if not isinstance(spec, Mapping):
            continue
        data = str(spec.get("data") or "")
        parameters = set(parse_qs(urlsplit(data).query, keep_blank_values=True))
        metadata = spec.get("metadata")
        if isinstance(metadata, Mapping):
            parameters.update(str(key) for key in metadata)
        filters[str(name)] = CampaignFilter(str(name), data, frozenset(parameters))
    return filters


class MetadataReader:
    """Reads a resource's description and its filters' metadata through the Campaign client (its
    timeouts, retries and rate limit).

    :raises NotFoundError: the resource does not exist on that endpoint (or is not published).
    """

    def __init__(self, campaign: CampaignClient) -> None:
        self.campaign = campaign

    def read(self, resource: str) -> ResourceMetadata:
        endpoint, name = resource.split("/", 1)
        description = self.campaign.pipeline.request("GET", f"{endpoint}/resourceType/{name}").json()
        # Follow the description's own link (Adobe's samples show it in more than one shape), but never
        # send the token to another host.
        href = (description.get("filters") or {}).get("href") or ""
        if not href.startswith(self.campaign.pipeline.base_url):
            href = f"{endpoint}/resourceType/{name}/filters"
        filters = parse_filters(self.campaign.pipeline.request("GET", href).json())
        return ResourceMetadata(resource, description, filters)
