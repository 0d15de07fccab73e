"""The app settings the Bicep deploys (`var appSettings` in infra/main.bicep) against what reads them.

A deployment fails at start-up when it leaves out a setting the settings model requires, and the Functions
host cannot index a function whose `%NAME%` binding resolves to nothing; a name nothing reads is silently
ignored (the model has extra="ignore"), so a typo would quietly fall back to a default. Secrets must be
Key Vault references, never values or parameters.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.settings import AppSettings, SettingsError, load_settings
from tests.builders.settings_env import valid_environment
from tests.infra.bicep import (
    BicepReadError,
    declared_parameters,
    object_entries,
    parameter_defaults,
    scan,
)

ROOT = Path(__file__).resolve().parents[2]
MAIN_BICEP = ROOT / "infra" / "main.bicep"
EXAMPLE_PARAMETERS = ROOT / "infra" / "main.parameters.example.json"
AZD_PARAMETERS = ROOT / "infra" / "main.parameters.json"
AZURE_YAML = ROOT / "azure.yaml"
PREPROVISION = ROOT / "infra" / "hooks" / "preprovision.sh"
# Set by azd itself in every environment (azd env new, azd auth login).
AZD_PROVIDED = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_SUBSCRIPTION_ID"}

# Read by the Functions host or by azure-identity rather than by shared.settings; this deployment needs
# every one of them.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential": "host storage through a managed identity",
    "AzureWebJobsStorage__clientId": "which identity: the user-assigned one",
    "AzureWebJobsStorage__blobServiceUri": "host storage: timer locks, function keys",
    "AzureWebJobsStorage__tableServiceUri": "host storage: diagnostic events",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra-authenticated telemetry (local auth is off)",
    "PYTHON_ENABLE_OPENTELEMETRY": "the worker leaves telemetry to the app (host.json telemetryMode)",
    "AZURE_CLIENT_ID": "DefaultAzureCredential's user-assigned identity (state store)",
}
APP_SETTINGS = frozenset(name.upper() for name in AppSettings.model_fields)
SECRET_SETTINGS = frozenset(
    name.upper()
    for name, field in AppSettings.model_fields.items()
    if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
)
KEY_VAULT_REFERENCE = "'@Microsoft.KeyVault("
# A secret only one way of signing in needs: `<condition> ? '@Microsoft.KeyVault(...)' : ''`.
CONDITIONAL_REFERENCE = re.compile(r"^[^?]+\?\s*'@Microsoft\.KeyVault\([^']*\)'\s*:\s*''$")


def required_by_app() -> set[str]:
    """What the settings model refuses to start without, including its either/or rules."""
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    return {name for name, _ in caught.value.problems}


def bound_by_functions() -> set[str]:
    """App settings the host resolves in function.json (`%CONTACTS_SYNC_SCHEDULE%`)."""
    names = set()
    for function_json in ROOT.glob("*/function.json"):
        names |= set(re.findall(r"%([A-Za-z0-9_]+)%", function_json.read_text()))
    return names


def settings_problems(bicep_settings: Mapping[str, str]) -> list[str]:
    """Everything wrong with a set of Bicep app settings ({name: value source}), one line each."""
    deployed = {name.upper(): value for name, value in bicep_settings.items()}
    platform = {name.upper() for name in PLATFORM_SETTINGS}
    problems = []
    for name in sorted(required_by_app() - deployed.keys()):
        problems.append(f"{name}: required by the app but not set in infra/main.bicep")
    for name in sorted({n.upper() for n in bound_by_functions()} - deployed.keys()):
        problems.append(f"{name}: bound in a function.json but not set in infra/main.bicep")
    for name in sorted(platform - deployed.keys()):
        problems.append(f"{name}: needed by the host or azure-identity but not set in infra/main.bicep")
    for name in sorted(deployed.keys() - APP_SETTINGS - platform):
        problems.append(f"{name}: set in infra/main.bicep but nothing reads it")
    for name in sorted(SECRET_SETTINGS & deployed.keys()):
        if not (
            deployed[name].startswith(KEY_VAULT_REFERENCE) or CONDITIONAL_REFERENCE.match(deployed[name])
        ):
            problems.append(f"{name}: a secret, so it must be a Key Vault reference")
    return problems


def main_bicep_settings(text: str | None = None) -> dict[str, str]:
    return object_entries(MAIN_BICEP.read_text() if text is None else text, "appSettings")


def without_setting(text: str, name: str) -> str:
    changed, count = re.subn(rf"^[ \t]*{re.escape(name)}[ \t]*:.*\n", "", text, flags=re.MULTILINE)
    assert count == 1, f"{name} is not one line of infra/main.bicep"
    return changed


def deploy_time_defaults(bicep_settings: Mapping[str, str], text: str) -> dict[str, str]:
    """The values the settings get from literals and parameter defaults, as ARM renders them; settings
    that come from resources or from parameters without a default are left out."""
    defaults = parameter_defaults(text)
    values = {}
    for name, source in bicep_settings.items():
        literal = re.fullmatch(r"'([^'\\$]*)'", source)
        wrapped = re.fullmatch(r"string\((\w+)\)", source)
        if literal:
            values[name] = literal.group(1)
        elif source in defaults:
            values[name] = str(defaults[source])
        elif wrapped and wrapped.group(1) in defaults:
            default = defaults[wrapped.group(1)]
            values[name] = str(default)  # ARM's string(true) is 'True', as Python's
    return values


# -- the deployment as it is -------------------------------------------------------------------------


def test_the_bicep_sets_every_required_setting_and_nothing_unknown():
    assert settings_problems(main_bicep_settings()) == []


def test_the_bicep_defaults_are_settings_the_app_accepts():
    text = MAIN_BICEP.read_text()
    defaults = deploy_time_defaults(main_bicep_settings(text), text)
    assert {"CONTACTS_SYNC_SCHEDULE", "EVENTS_PUSH_ENABLED", "D365_REQUESTS_PER_SECOND"} <= defaults.keys()
    from_resources = {"D365_MANAGED_IDENTITY_CLIENT_ID": "the user-assigned identity's client id"}
    settings = load_settings(
        valid_environment(
            **from_resources, **{k: v for k, v in defaults.items() if k.upper() in APP_SETTINGS}
        )
    )
    assert settings.contacts_sync_schedule == defaults["CONTACTS_SYNC_SCHEDULE"]
    assert settings.events_push_enabled is True
    assert settings.d365_auth_method == "managed_identity_federation"  # no Dataverse secret by default


def test_a_timer_run_stops_before_the_host_times_it_out():
    text = MAIN_BICEP.read_text()
    budget = int(deploy_time_defaults(main_bicep_settings(text), text)["FUNCTION_TIME_BUDGET_SECONDS"])
    hours, minutes, seconds = map(
        int, json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":")
    )
    assert timedelta(seconds=budget) < timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_the_example_parameters_give_every_parameter_without_default_and_only_known_ones():
    declared = declared_parameters(MAIN_BICEP.read_text())
    example = json.loads(EXAMPLE_PARAMETERS.read_text())["parameters"]
    assert sorted(example.keys() - declared.keys()) == []
    assert sorted(name for name, default in declared.items() if default is None and name not in example) == []


def test_a_key_vault_reference_that_did_not_resolve_stops_the_app_instead_of_becoming_the_secret():
    unresolved = "@Microsoft.KeyVault(VaultName=kv-acsd365-abc;SecretName=webhook-shared-secret)"
    with pytest.raises(SettingsError) as caught:
        load_settings(valid_environment(WEBHOOK_SHARED_SECRET=unresolved, ACS_CLIENT_SECRET=unresolved))
    problems = dict(caught.value.problems)
    assert set(problems) == {"WEBHOOK_SHARED_SECRET", "ACS_CLIENT_SECRET"}
    assert problems["WEBHOOK_SHARED_SECRET"].startswith("an unresolved Key Vault reference")


def azd_parameters() -> dict[str, str]:
    """infra/main.parameters.json as {parameter: the azd substitution that gives it}."""
    return {
        name: spec["value"] for name, spec in json.loads(AZD_PARAMETERS.read_text())["parameters"].items()
    }


def azd_variables(value: str) -> tuple[str, str | None]:
    """`${NAME}` or `${NAME=default}` → (NAME, default or None)."""
    found = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)(?:=([^}]*))?\}", value)
    assert found, f"{value!r} is not an azd substitution"
    return found.group(1), found.group(2)


def test_the_azd_parameters_give_every_parameter_without_default_from_the_azd_environment():
    declared = declared_parameters(MAIN_BICEP.read_text())
    given = azd_parameters()
    assert sorted(given.keys() - declared.keys()) == []
    assert sorted(name for name, default in declared.items() if default is None and name not in given) == []
    for value in given.values():
        azd_variables(value)


def test_the_values_azd_cannot_default_are_the_ones_preprovision_requires_and_the_docs_name():
    required = {
        name
        for name, default in (azd_variables(v) for v in azd_parameters().values())
        if default is None and name not in AZD_PROVIDED
    }
    checked = set(
        re.search(r"^require_values (.+)$", PREPROVISION.read_text(), re.MULTILINE).group(1).split()
    )
    assert checked == required
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    assert sorted(name for name in required if f"azd env set {name} " not in deploy_doc) == []


def test_the_azd_parameter_defaults_are_values_the_parameters_allow():
    text = MAIN_BICEP.read_text()
    for parameter, value in azd_parameters().items():
        _, default = azd_variables(value)
        if default is None:
            continue
        allowed = re.search(rf"@allowed\(\[([^\]]*)\]\)\s*param {parameter} ", text)
        if allowed:
            assert f"'{default}'" in allowed.group(1), parameter
        kind = re.search(rf"^param {parameter} (\w+)", text, re.MULTILINE).group(1)
        assert {"bool": default in ("true", "false"), "int": default.isdigit()}.get(kind, True), parameter


def test_azure_yaml_deploys_the_function_app_the_bicep_creates_and_runs_the_hooks():
    import yaml

    project = yaml.safe_load(AZURE_YAML.read_text())
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    [service] = project["services"].values()
    assert (service["project"], service["language"], service["host"]) == (".", "python", "function")
    output, _ = azd_variables(service["resourceName"])
    assert re.search(rf"^output {output} string = functionApp\.outputs\.name$", MAIN_BICEP.read_text(), re.M)
    assert set(project["hooks"]) == {"preprovision", "postprovision", "postdeploy"}
    for hook in project["hooks"].values():
        script = ROOT / hook["run"]
        assert script.is_file() and script.stat().st_mode & 0o111, hook["run"]


def test_the_hooks_need_only_values_azd_has_after_provisioning():
    outputs = set(re.findall(r"^output (\w+) ", MAIN_BICEP.read_text(), re.MULTILINE))
    inputs = {azd_variables(v)[0] for v in azd_parameters().values()}
    known = outputs | inputs | AZD_PROVIDED | {"AZURE_RESOURCE_GROUP"}  # azd asks for the group
    for hook in (ROOT / "infra" / "hooks").glob("*.sh"):
        for line in re.findall(r"^\s*require_values (.+)$", hook.read_text(), re.MULTILINE):
            assert sorted(set(line.split()) - known) == [], hook.name


# -- the check catches what it is for ----------------------------------------------------------------

WATCHED = sorted(required_by_app() | bound_by_functions() | set(PLATFORM_SETTINGS))


@pytest.mark.parametrize("name", WATCHED)
def test_removing_a_needed_setting_from_the_bicep_is_reported(name):
    text = without_setting(MAIN_BICEP.read_text(), name)
    problems = settings_problems(main_bicep_settings(text))
    assert [p for p in problems if p.startswith(f"{name.upper()}:")] != []


def test_removing_the_state_account_names_the_setting_and_why():
    text = without_setting(MAIN_BICEP.read_text(), "STATE_STORAGE_ACCOUNT_NAME")
    assert settings_problems(main_bicep_settings(text)) == [
        "STATE_STORAGE_ACCOUNT_NAME: required by the app but not set in infra/main.bicep"
    ]


def test_a_setting_nothing_reads_is_reported():
    text = MAIN_BICEP.read_text().replace("  D365_ORG_URL:", "  D365_ORG_ULR: d365OrgUrl\n  D365_ORG_URL:", 1)
    assert settings_problems(main_bicep_settings(text)) == [
        "D365_ORG_ULR: set in infra/main.bicep but nothing reads it"
    ]


def test_a_secret_given_as_a_parameter_is_reported():
    text = re.sub(r"(?m)^(\s*ACS_CLIENT_SECRET:).*$", r"\1 acsClientId", MAIN_BICEP.read_text())
    assert settings_problems(main_bicep_settings(text)) == [
        "ACS_CLIENT_SECRET: a secret, so it must be a Key Vault reference"
    ]


def test_every_secret_the_bicep_sets_is_a_key_vault_reference_in_the_vault_it_creates():
    settings = main_bicep_settings()
    secrets = SECRET_SETTINGS & settings.keys()
    assert {"D365_CLIENT_SECRET", "ACS_CLIENT_SECRET", "WEBHOOK_SHARED_SECRET"} <= secrets
    for name in secrets:
        assert "VaultName=${keyVaultName}" in settings[name], name


# -- the reader ----------------------------------------------------------------------------------------


def test_the_reader_is_not_misled_by_braces_colons_and_quotes_inside_values():
    text = """
var other = { NOT_THIS: 'x' }
var appSettings = {
  // A comment with KEY: value and a brace {
  PLAIN: 'a:b}'
  INTERPOLATED: '${first(split('x}y', '}'))}:${resource.properties.name}' // trailing note
  'QUOTED_KEY': cond ? {
    inner: 'not a top-level key'
  } : {}
  /* block
     LOOKS_LIKE_KEY: 1 */
  LAST: '''multi
line: '{' '''
}
var after = { ALSO_NOT_THIS: 1 }
"""
    assert object_entries(text, "appSettings") == {
        "PLAIN": "'a:b}'",
        "INTERPOLATED": "'${first(split('x}y', '}'))}:${resource.properties.name}'",
        "QUOTED_KEY": "cond ? {\n    inner: 'not a top-level key'\n  } : {}",
        "LAST": "'''multi\nline: '{' '''",
    }


def test_the_reader_refuses_a_name_set_twice_in_different_case():
    with pytest.raises(BicepReadError, match="set twice"):
        object_entries("var appSettings = {\n  LOG_LEVEL: 'INFO'\n  log_level: 'DEBUG'\n}\n", "appSettings")


def test_the_reader_refuses_keys_it_cannot_name():
    with pytest.raises(BicepReadError, match="computed key"):
        object_entries("var appSettings = {\n  '${prefix}_URL': 'x'\n}\n", "appSettings")


def test_the_reader_refuses_an_unbalanced_value():
    with pytest.raises(BicepReadError, match="unbalanced"):
        scan("concat(a, b]", 0, stop="\n")


def test_only_literal_parameter_defaults_are_read():
    text = (
        "param a string = 'x'\nparam b int = 4\nparam c bool = false\nparam d string\nparam e string = f()\n"
    )
    assert parameter_defaults(text) == {"a": "x", "b": 4, "c": False}
