from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from shared.mapping.model import SyncConfigError, load_sync_config, parse_sync_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = json.loads((ROOT / "sync_config.json").read_text())


def config(**changes) -> dict:
    data = copy.deepcopy(SHIPPED)
    data.update(changes)
    return data


def contact_mapping(data: dict) -> dict:
    return data["tables"][0]


def vehicle_mapping(
    name: str = "vehicles", table: str = "cr123_vehicle", resource: str = "cusVehicle"
) -> dict:
    return {
        "name": name,
        "d365_table": table,
        "acs_resource": f"profileAndServicesExt/{resource}",
        "key": {"d365": f"{table}id", "acs": "externalId"},
        "fields": [{"d365": "cr123_name", "acs": "name"}],
    }


def error_of(data) -> str:
    with pytest.raises(SyncConfigError) as caught:
        parse_sync_config(data)
    return str(caught.value)


def test_the_shipped_config_maps_contacts_to_profiles_by_external_id():
    loaded = load_sync_config(inline=None, path="sync_config.json", base_dir=ROOT)
    contact = loaded.contact_mapping
    assert contact.key.d365 == "contactid" and contact.key.acs == "externalId"
    assert {f.acs for f in contact.fields} >= {"firstName", "lastName", "email", "location.city", "birthDate"}
    assert {p.d365 for p in loaded.optout.pairs} == {
        "donotemail",
        "donotphone",
        "donotpostalmail",
        "donotfax",
    }


def test_inline_json_wins_over_the_config_file(tmp_path):
    inline = json.dumps(config(optout={"direction": "disabled"}))
    loaded = load_sync_config(inline=inline, path=tmp_path / "missing.json")
    assert loaded.optout.direction == "disabled"


def test_an_unreadable_config_file_is_named_in_the_error(tmp_path):
    with pytest.raises(SyncConfigError, match=r"SYNC_CONFIG_PATH: cannot read .*missing\.json"):
        load_sync_config(inline=None, path=tmp_path / "missing.json")


def test_config_that_is_not_json_says_so():
    with pytest.raises(SyncConfigError, match="SYNC_CONFIG is not valid JSON"):
        load_sync_config(inline="{tables: [", path="unused.json")


def test_two_dynamics_fields_into_one_campaign_field_name_the_mapping_and_fields():
    data = config()
    contact_mapping(data)["fields"].append({"d365": "emailaddress2", "acs": "email"})
    message = error_of(data)
    assert "mapping 'contacts'" in message
    assert "'emailaddress1' and 'emailaddress2' both map to Campaign field 'email'" in message


def test_a_field_cannot_overwrite_the_key_field():
    data = config()
    contact_mapping(data)["fields"].append({"d365": "employeeid", "acs": "externalId"})
    assert "'contactid' and 'employeeid' both map to Campaign field 'externalId'" in error_of(data)


def test_a_dynamics_table_mapped_twice_is_rejected():
    data = config()
    data["tables"].append(vehicle_mapping("contacts2", table="contact", resource="cusOther"))
    assert "Dynamics table 'contact' is mapped twice (mappings 'contacts' and 'contacts2')" in error_of(data)


def test_a_campaign_resource_mapped_twice_is_rejected():
    data = config()
    data["tables"] += [vehicle_mapping("v1", table="cr123_car"), vehicle_mapping("v2", table="cr123_bike")]
    assert "Campaign resource 'profileAndServicesExt/cusVehicle' is mapped twice" in error_of(data)


def test_a_replacement_on_an_unmapped_field_is_rejected():
    data = config()
    contact_mapping(data)["replacements"].append({"field": "familystatuscode", "from": 1, "to": "single"})
    assert "replacement on 'familystatuscode', which is not a mapped Dynamics field" in error_of(data)


def test_opt_out_pairs_accept_only_campaigns_eight_opt_out_booleans():
    data = config()
    data["optout"]["pairs"].append({"d365": "donotsendmm", "acs": "email"})
    message = error_of(data)
    assert "optout.pairs.4.acs" in message and "'email' is not a Campaign opt-out boolean" in message


def test_an_opt_out_field_cannot_also_be_a_mapped_field():
    data = config()
    contact_mapping(data)["fields"].append({"d365": "donotbulkemail", "acs": "blackListEmail"})
    assert "'blackListEmail' is both an opt-out pair and a field of mapping 'contacts'" in error_of(data)


def test_opt_out_pairs_are_unique_per_side():
    data = config()
    data["optout"]["pairs"].append({"d365": "donotemail", "acs": "blackList"})
    assert "d365 field(s) ['donotemail'] paired more than once" in error_of(data)


def test_more_custom_tables_than_the_guard_allows_is_rejected():
    data = config(limits={"max_custom_tables": 2})
    data["tables"] += [vehicle_mapping(f"t{i}", table=f"cr123_t{i}", resource=f"cusT{i}") for i in range(3)]
    assert "3 custom tables mapped; the limit is 2 (limits.max_custom_tables)" in error_of(data)


def test_more_columns_than_the_guard_allows_is_rejected():
    data = config(limits={"max_columns": 5})
    assert "mapping 'contacts' maps 11 columns; the limit is 5 (limits.max_columns)" in error_of(data)


def test_the_default_guard_is_adobes_twenty_tables_by_fifty_columns():
    loaded = parse_sync_config(config())
    assert (loaded.limits.max_custom_tables, loaded.limits.max_columns) == (20, 50)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "statecode", "op": "in", "value": []}, "op 'in' needs a non-empty list"),
        ({"field": "statecode", "op": "eq"}, "op 'eq' needs a value"),
        ({"field": "statecode", "op": "null", "value": 1}, "op 'null' takes no value"),
        ({"field": "statecode", "op": "like", "value": 1}, "Input should be 'eq', 'ne'"),
    ],
)
def test_filter_conditions_must_fit_their_operator(condition, expected):
    data = config()
    contact_mapping(data)["filter"] = {"combine": "or", "conditions": [condition]}
    assert expected in error_of(data)


def test_filters_replacements_and_switches_round_trip():
    data = config()
    contact_mapping(data).update(
        filter={
            "combine": "or",
            "conditions": [{"field": "statecode", "op": "eq", "value": 0}],
            "delete_filtered_out": True,
        },
        apply_deletes=False,
    )
    contact_mapping(data)["fields"][0]["apply_updates"] = False
    loaded = parse_sync_config(data).contact_mapping
    assert loaded.filter.combine == "or" and loaded.filter.delete_filtered_out
    assert loaded.apply_deletes is False and loaded.fields[0].apply_updates is False
    assert loaded.replacements[0].from_value == 1 and loaded.replacements[0].to_value == "male"


def test_unknown_keys_are_rejected_so_typos_do_not_pass_silently():
    data = config()
    contact_mapping(data)["apply_delete"] = True
    assert "tables.0.apply_delete" in error_of(data)


def test_a_bad_campaign_resource_path_is_explained():
    data = config()
    contact_mapping(data)["acs_resource"] = "profiles"
    assert "'profiles' is not a Campaign resource path" in error_of(data)


def test_an_opt_out_direction_without_pairs_is_rejected():
    assert "direction 'bidirectional' needs at least one field pair" in error_of(
        config(optout={"direction": "bidirectional", "pairs": []})
    )


def test_event_toggles_give_the_enabled_types():
    loaded = parse_sync_config(config(events={"open": False, "bounce": False}))
    assert loaded.events.enabled_types == {"send", "click"}
    assert loaded.events.activity_tables.open == "acs_emailopen"
