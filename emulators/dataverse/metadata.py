"""`EntityDefinitions` and `RelationshipDefinitions`: routing their requests, and reading table/column/key/
relationship definitions with `$select`, `$filter` and `$expand`; changes go on to `metadata_writes`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors, metadata_writes
from .errors import ApiError
from .messages import ApiCall, Reply, json_reply
from .metadata_json import CRM, attribute_json, entity_json, key_json, option_set_json, relationship_json
from .odata import Segment, compile_filter, parse_key, split_outside_quotes, syntax_error
from .schema import BOOLEAN, CHOICE_TYPES, METADATA_TYPE, Attribute, Schema, Table
from .store import Store


def parse_expand(text: str) -> dict[str, dict[str, str]]:
    """`Attributes($select=a,b;$filter=x),Keys` -> {"Attributes": {"$select": "a,b", ...}, "Keys": {}}."""
    items, current, depth = [], "", 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    expand = {}
    for item in filter(None, (i.strip() for i in items)):
        name, _, rest = item.partition("(")
        options = {}
        if rest:
            for option in split_outside_quotes(rest.rstrip(")"), ";"):
                key, _, value = option.partition("=")
                options[key.strip()] = value.strip()
        expand[name.strip()] = options
    return expand


def _shape(item: dict, options) -> dict:
    """Apply `$select` (keeping what `$expand` added)."""
    select = options.get("$select")
    if not select:
        return item
    names = {n.strip() for n in select.split(",") if n.strip()}
    for name in names:
        if name not in item:
            raise syntax_error(
                f"Could not find a property named '{name}' on type '{item.get('@odata.type', '')[1:]}'."
            )
    keep = names | parse_expand(options.get("$expand", "")).keys() | {"@odata.type", "MetadataId"}
    return {k: v for k, v in item.items() if k in keep}


def _query(items: list[dict], options) -> list[dict]:
    if options.get("$filter"):

        def resolve(path: str) -> Callable[[dict], Any]:
            def get(item: dict) -> Any:
                value: Any = item
                for part in path.split("/"):
                    value = value.get(part) if isinstance(value, dict) else None
                return value

            return get

        predicate = compile_filter(options["$filter"], resolve)
        items = [i for i in items if predicate(i)]
    return [_shape(i, options) for i in items]


class Metadata:
    def __init__(self, schema: Schema, store: Store, on_table_created: Callable[[Table], None]) -> None:
        self.schema = schema
        self.store = store
        self.on_table_created = on_table_created

    # -- routing ------------------------------------------------------------------------------------------

    def handle(self, call: ApiCall, segments: list[Segment]) -> Reply:
        with self.schema.lock:
            if segments[0].name == "RelationshipDefinitions":
                return self._relationships(call, segments)
            if len(segments) == 1 and segments[0].key is None:
                if call.method == "GET":
                    items = [self._entity(t, call.args) for t in self.schema.tables.values()]
                    return self._list(call, "EntityDefinitions", items, call.args)
                if call.method == "POST":
                    return metadata_writes.create_custom_table(call, self.schema, self.on_table_created)
                raise _method_not_allowed(call)
            table = self._table(segments[0])
            if len(segments) == 1:
                if call.method == "GET":
                    item = self._entity(table, call.args)
                    return json_reply(
                        200,
                        {
                            "@odata.context": f"{call.api_url}$metadata#EntityDefinitions/$entity",
                            **_shape(item, call.args),
                        },
                    )
                if call.method == "PUT":
                    return metadata_writes.update_table(call, table)
                raise _method_not_allowed(call)
            return self._table_part(call, table, segments[1:])

    def _table(self, segment: Segment) -> Table:
        key = parse_key(segment.key or "")
        if isinstance(key, str):
            table = self.schema.by_metadata_id(key)
            if table is None:
                raise ApiError(
                    404, errors.NOT_FOUND, f"Could not find an entity with the MetadataId '{key}'."
                )
            return table
        if set(key) != {"LogicalName"}:
            raise syntax_error("EntityDefinitions can be addressed by MetadataId or LogicalName only.")
        return self.schema.table(str(key["LogicalName"]))

    def _list(self, call: ApiCall, context: str, items: list[dict], options) -> Reply:
        return json_reply(
            200, {"@odata.context": f"{call.api_url}$metadata#{context}", "value": _query(items, options)}
        )

    def _entity(self, table: Table, options) -> dict:
        item = entity_json(table)
        for name, nested in parse_expand(options.get("$expand", "")).items():
            item[name] = _query(self._navigation(table, name), nested)
        return item

    def _navigation(self, table: Table, name: str) -> list[dict]:
        if name == "Attributes":
            return [attribute_json(table, a) for a in table.attributes.values()]
        if name == "Keys":
            return [key_json(table, k) for k in table.keys.values()]
        if name == "ManyToOneRelationships":
            return [relationship_json(r) for r in table.relationships.values()]
        if name == "OneToManyRelationships":
            return [relationship_json(r) for r in self.schema.one_to_many(table.logical_name)]
        raise syntax_error(f"Could not find a property named '{name}' on type '{CRM}EntityMetadata'.")

    def _table_part(self, call: ApiCall, table: Table, rest: list[Segment]) -> Reply:
        head = rest[0]
        if head.name == "Attributes":
            return self._attributes(call, table, rest)
        if head.name == "Keys":
            if head.key is None and call.method == "POST":
                return metadata_writes.create_key(call, table, self.store)
            keys = [key_json(table, k) for k in table.keys.values()]
            if head.key is not None:
                wanted = parse_key(head.key)
                match = [
                    k
                    for k in keys
                    if k["MetadataId"] == wanted
                    or (isinstance(wanted, dict) and k["LogicalName"] == wanted.get("LogicalName"))
                ]
                if not match:
                    raise ApiError(404, errors.NOT_FOUND, f"Could not find the key '{head.key}'.")
                return json_reply(200, _shape(match[0], call.args))
            return self._list(call, f"EntityDefinitions('{table.logical_name}')/Keys", keys, call.args)
        if head.name in ("ManyToOneRelationships", "OneToManyRelationships") and call.method == "GET":
            return self._list(
                call,
                f"EntityDefinitions('{table.logical_name}')/{head.name}",
                self._navigation(table, head.name),
                call.args,
            )
        raise syntax_error(f"Resource not found for the segment '{head.name}'.")

    def _attributes(self, call: ApiCall, table: Table, rest: list[Segment]) -> Reply:
        head = rest[0]
        cast = rest[1].name if len(rest) > 1 else None
        if cast is not None and not cast.startswith(CRM):
            raise syntax_error(f"Resource not found for the segment '{cast}'.")
        if head.key is None:
            if call.method == "POST" and cast is None:
                return metadata_writes.create_attribute(call, table)
            attributes = [
                a
                for a in table.attributes.values()
                if cast is None or METADATA_TYPE[a.type] == cast[len(CRM) :]
            ]
            items = [self._attribute(table, a, call.args) for a in attributes]
            return self._list(call, f"EntityDefinitions('{table.logical_name}')/Attributes", items, call.args)
        wanted = parse_key(head.key)
        attribute = next(
            (
                a
                for a in table.attributes.values()
                if a.metadata_id == wanted
                or (isinstance(wanted, dict) and a.logical_name == wanted.get("LogicalName"))
            ),
            None,
        )
        if attribute is None or (cast is not None and METADATA_TYPE[attribute.type] != cast[len(CRM) :]):
            raise ApiError(
                404, errors.NOT_FOUND, f"Could not find attribute '{head.key}' on '{table.logical_name}'."
            )
        item = self._attribute(table, attribute, call.args)
        context = f"{call.api_url}$metadata#EntityDefinitions('{table.logical_name}')/Attributes/$entity"
        return json_reply(200, {"@odata.context": context, **_shape(item, call.args)})

    def _attribute(self, table: Table, attribute: Attribute, options) -> dict:
        item = attribute_json(table, attribute)
        for name, nested in parse_expand(options.get("$expand", "")).items():
            if name == "OptionSet" and (attribute.type in CHOICE_TYPES or attribute.type == BOOLEAN):
                item[name] = _shape(option_set_json(table, attribute), nested)
            elif name == "GlobalOptionSet" and (attribute.type in CHOICE_TYPES or attribute.type == BOOLEAN):
                item[name] = None
            else:
                raise syntax_error(
                    f"Could not find a property named '{name}' on type '{item['@odata.type'][1:]}'."
                )
        return item

    def _relationships(self, call: ApiCall, segments: list[Segment]) -> Reply:
        head = segments[0]
        if call.method == "POST" and head.key is None and len(segments) == 1:
            return metadata_writes.create_relationship(call, self.schema)
        if call.method != "GET" or len(segments) != 1:
            raise _method_not_allowed(call)
        relationships = [r for t in self.schema.tables.values() for r in t.relationships.values()]
        if head.key is None:
            return self._list(
                call, "RelationshipDefinitions", [relationship_json(r) for r in relationships], call.args
            )
        wanted = parse_key(head.key)
        match = next(
            (
                r
                for r in relationships
                if r.metadata_id == wanted
                or (
                    isinstance(wanted, dict)
                    and r.schema_name.lower() == str(wanted.get("SchemaName", "")).lower()
                )
            ),
            None,
        )
        if match is None:
            raise ApiError(404, errors.NOT_FOUND, f"Could not find the relationship '{head.key}'.")
        return json_reply(200, _shape(relationship_json(match), call.args))


def _method_not_allowed(call: ApiCall) -> ApiError:
    return ApiError(
        405, errors.QUERY_SYNTAX, f"The HTTP method '{call.method}' is not allowed on '{call.path}'."
    )
