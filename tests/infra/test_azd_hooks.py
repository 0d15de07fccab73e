"""The azd hooks (infra/hooks/*.sh) run for real under /bin/sh against fakes of `az`, `azd` and the
operator CLI (tests/infra/fake_tools.py): what they issue, with which arguments, what they refuse, and
that no secret ever appears on a command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "infra" / "hooks"
FAKE = Path(__file__).with_name("fake_tools.py")

ISSUER = "https://login.microsoftonline.com/00000000-0000-0000-0000-0000000000aa/v2.0"
SUBJECT = "5e1f0c2a-0000-4000-8000-00000000beef"
AUDIENCE = "api://AzureADTokenExchange"

# What azd hands the hooks after `azd provision`: the values set with `azd env set` and the Bicep outputs.
AZD_ENVIRONMENT = {
    "AZURE_ENV_NAME": "prod",
    "AZURE_RESOURCE_GROUP": "rg-acsd365-prod",
    "AZURE_LOCATION": "westeurope",
    "D365_ORG_URL": "https://contoso.crm.dynamics.com",
    "D365_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
    "ACS_TENANT": "contoso",
    "ACS_CLIENT_ID": "acs-client-id",
    "ACS_EVENTS_JOURNAL_URL": "https://events-va6.adobe.io/events/organizations/1/integrations/2/3",
    "ACS_IMS_ORG_ID": "ABC123@AdobeOrg",
    "FUNCTION_APP_NAME": "func-acsd365-abc",
    "KEY_VAULT_NAME": "kv-acsd365-abc",
    "WEBHOOK_URL": "https://func-acsd365-abc.azurewebsites.net/api/webhook_d365",
    "STATUS_URL": "https://func-acsd365-abc.azurewebsites.net/api/status",
    "FEDERATED_CREDENTIAL_ISSUER": ISSUER,
    "FEDERATED_CREDENTIAL_SUBJECT": SUBJECT,
    "FEDERATED_CREDENTIAL_AUDIENCE": AUDIENCE,
}
APP_SETTINGS = [
    {"name": "D365_ORG_URL", "value": "https://contoso.crm.dynamics.com"},
    {"name": "D365_AUTH", "value": "managed_identity_federation"},
    {"name": "D365_CLIENT_SECRET", "value": ""},
    {"name": "ACS_CLIENT_SECRET", "value": "@Microsoft.KeyVault(VaultName=kv;SecretName=acs-client-secret)"},
    {"name": "AzureWebJobsStorage__credential", "value": "managedidentity"},
    {"name": "AZURE_CLIENT_ID", "value": "the-identity"},
    {"name": "STATE_STORAGE_ACCOUNT_NAME", "value": "stacsd365abc"},
]
SECRETS_IN_VAULT = {
    "acs-client-secret": "acs-secret-from-vault",
    "webhook-shared-secret": "webhook-from-vault",
}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict]

    def argv_of(self, tool: str) -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["tool"] == tool]

    def issued(self, tool: str, *tokens: str) -> list[dict]:
        return [c for c in self.calls if c["tool"] == tool and all(t in c["argv"] for t in tokens)]


class Hooks:
    """Runs a hook with fakes first on PATH; `rules` answer the calls (see fake_tools.py)."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        # The fake's own file name says what it fakes.
        for tool in ("az", "azd", "python"):
            script = self.bin / tool
            script.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
            script.chmod(0o755)
        self.rules: list[dict] = []
        self.environment = dict(AZD_ENVIRONMENT)

    def answer(self, tool: str, *match: str, **reply) -> None:
        self.rules.append({"tool": tool, "match": list(match), **reply})

    def vault_holds(self, secrets: dict[str, str]) -> None:
        for name, value in secrets.items():
            self.answer(
                "az", "keyvault", "secret", "show", "--name", name, "--query", "value", stdout=value + "\n"
            )
            self.answer(
                "az",
                "keyvault",
                "secret",
                "show",
                "--name",
                name,
                "--query",
                "id",
                stdout=f"https://kv/{name}\n",
            )
        self.answer(
            "az",
            "keyvault",
            "secret",
            "show",
            rc=3,
            stderr="(SecretNotFound) A secret with (name/id) was not found",
        )

    def run(self, hook: str, *, path: str | None = None, env: dict[str, str] | None = None) -> Run:
        (self.dir / "rules.json").write_text(json.dumps(self.rules))
        calls_log = self.dir / "calls.jsonl"
        calls_log.write_text("")
        environment = {
            "PATH": path if path is not None else f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.dir),
            "TMPDIR": str(self.dir),
            "FAKE_TOOLS_DIR": str(self.dir),
            "FAKE_REAL_PYTHON": sys.executable,
            "FAKE_RECORD_ENV": "D365_AUTH,ACS_CLIENT_SECRET,WEBHOOK_SHARED_SECRET,D365_CLIENT_SECRET",
            "ACSD365_PYTHON": str(self.bin / "python"),
            "ACSD365_RETRY_SECONDS": "0",
            "ACSD365_RETRY_TRIES": "3",
            **self.environment,
            **(env or {}),
        }
        done = subprocess.run(
            ["/bin/sh", str(HOOKS / hook)],
            cwd=self.dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        calls = [json.loads(line) for line in calls_log.read_text().splitlines() if line]
        return Run(done.returncode, done.stdout, done.stderr, calls)


@pytest.fixture
def hooks(tmp_path) -> Hooks:
    hooks = Hooks(tmp_path)
    hooks.answer("az", "account", "show")
    hooks.answer("az", "functionapp", "config", "appsettings", "list", stdout=json.dumps(APP_SETTINGS))
    return hooks


def no_secret_on_a_command_line(run: Run, *secrets: str) -> bool:
    return not any(secret in " ".join(call["argv"]) for call in run.calls for secret in secrets)


# -- preprovision ---------------------------------------------------------------------------------------


def test_preprovision_passes_with_the_tools_the_values_and_a_valid_sync_config(hooks):
    run = hooks.run("preprovision.sh")
    assert run.returncode == 0, run.stderr
    assert run.argv_of("az") == [["account", "show", "--output", "none"]]
    assert "ok: 1 table mapping(s): contacts" in run.stdout
    assert "Prerequisites met." in run.stderr


def test_preprovision_stops_when_the_azure_cli_is_missing(hooks, tmp_path):
    without_az = tmp_path / "without-az"
    without_az.mkdir()
    (without_az / "python").symlink_to(hooks.bin / "python")
    if Path("/usr/bin/az").exists():
        pytest.skip("a real az is installed on this machine")
    run = hooks.run("preprovision.sh", path=f"{without_az}:/usr/bin:/bin")
    assert run.returncode == 1
    assert "the Azure CLI (az) is not installed" in run.stderr


def test_preprovision_stops_when_the_azure_cli_is_not_signed_in(hooks):
    hooks.rules.insert(
        0, {"tool": "az", "match": ["account", "show"], "rc": 1, "stderr": "Please run 'az login'"}
    )
    run = hooks.run("preprovision.sh")
    assert run.returncode == 1
    assert "run 'az login'" in run.stderr


def test_preprovision_stops_without_the_python_environment(hooks, tmp_path):
    run = hooks.run("preprovision.sh", env={"ACSD365_PYTHON": str(tmp_path / "no-venv" / "python")})
    assert run.returncode == 1
    assert "run 'make setup' first" in run.stderr


def test_preprovision_names_every_missing_value_in_one_message(hooks):
    for name in ("D365_ORG_URL", "ACS_TENANT", "ACS_IMS_ORG_ID"):
        del hooks.environment[name]
    run = hooks.run("preprovision.sh")
    assert run.returncode == 1
    assert "missing azd environment value(s): D365_ORG_URL ACS_TENANT ACS_IMS_ORG_ID." in run.stderr
    assert "azd env set NAME VALUE" in run.stderr


def test_preprovision_refuses_an_unknown_dataverse_sign_in(hooks):
    run = hooks.run("preprovision.sh", env={"D365_AUTH": "password"})
    assert run.returncode == 1
    assert "D365_AUTH is 'password'" in run.stderr


def test_a_hook_run_by_hand_loads_the_azd_environment(hooks):
    del hooks.environment["AZURE_ENV_NAME"]
    hooks.answer(
        "azd",
        "env",
        "get-values",
        stdout='AZURE_ENV_NAME="prod"\nD365_ORG_URL="https://x.crm.dynamics.com"\n',
    )
    run = hooks.run("preprovision.sh")
    assert run.returncode == 0, run.stderr
    assert run.argv_of("azd") == [["env", "get-values"]]


# -- postprovision --------------------------------------------------------------------------------------


def test_postprovision_stores_given_secrets_generates_the_webhook_secret_and_prepares_dynamics(hooks):
    hooks.answer(
        "az",
        "keyvault",
        "secret",
        "show",
        "--name",
        "webhook-shared-secret",
        "--query",
        "id",
        rc=3,
        stderr="(SecretNotFound) not found",
    )
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "ad", "app", "federated-credential", "list", stdout="0\n")
    run = hooks.run("postprovision.sh", env={"ACS_CLIENT_SECRET": "acs-secret-given"})
    assert run.returncode == 0, run.stderr

    stored = {c["argv"][c["argv"].index("--name") + 1]: c["file"] for c in run.issued("az", "secret", "set")}
    assert stored["acs-client-secret"] == "acs-secret-given"
    assert re.fullmatch(r"[0-9a-f]{64}", stored["webhook-shared-secret"])
    assert "d365-client-secret" not in stored  # no Dataverse secret with the federated credential
    assert all("--file" in call["argv"] for call in run.issued("az", "secret", "set"))
    assert no_secret_on_a_command_line(run, "acs-secret-given", stored["webhook-shared-secret"])

    [create] = run.issued("az", "federated-credential", "create")
    assert create["argv"][:6] == [
        "ad",
        "app",
        "federated-credential",
        "create",
        "--id",
        AZD_ENVIRONMENT["D365_CLIENT_ID"],
    ]
    assert json.loads(create["argv"][create["argv"].index("--parameters") + 1]) == {
        "name": "acsd365-prod",
        "issuer": ISSUER,
        "subject": SUBJECT,
        "audiences": [AUDIENCE],
        "description": "acs-d365-sync function app (prod)",
    }

    [setup] = run.issued("python", "d365", "setup")
    assert setup["argv"] == ["-m", "shared.cli", "d365", "setup"]
    assert setup["env"]["D365_AUTH"] == "azure_cli"  # the operator's login: no managed identity here
    assert setup["env"]["ACS_CLIENT_SECRET"] == "acs-secret-from-vault"


def test_postprovision_keeps_the_secrets_already_in_the_vault_and_asks_for_nothing(hooks):
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "ad", "app", "federated-credential", "list", stdout="1\n")
    run = hooks.run("postprovision.sh")
    assert run.returncode == 0, run.stderr
    assert run.issued("az", "secret", "set") == []
    assert run.issued("az", "federated-credential", "create") == []
    assert "acs-client-secret: already in kv-acsd365-abc, kept" in run.stderr


def test_postprovision_fails_clearly_when_a_secret_is_neither_given_nor_stored_nor_askable(hooks):
    hooks.vault_holds({"webhook-shared-secret": "w"})
    run = hooks.run("postprovision.sh")
    assert run.returncode == 1
    assert (
        "acs-client-secret is not in Key Vault kv-acsd365-abc and ACS_CLIENT_SECRET is not set" in run.stderr
    )
    assert run.issued("python", "d365", "setup") == []


def test_with_a_client_secret_the_dynamics_secret_is_required_and_used(hooks):
    hooks.vault_holds({**SECRETS_IN_VAULT, "d365-client-secret": "d365-from-vault"})
    settings = [
        s if s["name"] != "D365_AUTH" else {"name": "D365_AUTH", "value": "client_secret"}
        for s in APP_SETTINGS
    ]
    hooks.rules.insert(0, {"tool": "az", "match": ["appsettings", "list"], "stdout": json.dumps(settings)})
    run = hooks.run(
        "postprovision.sh", env={"D365_AUTH": "client_secret", "D365_CLIENT_SECRET": "d365-given"}
    )
    assert run.returncode == 0, run.stderr
    stored = {c["argv"][c["argv"].index("--name") + 1]: c["file"] for c in run.issued("az", "secret", "set")}
    assert stored == {"d365-client-secret": "d365-given"}
    assert run.issued("az", "federated-credential") == []
    [setup] = run.issued("python", "d365", "setup")
    assert setup["env"]["D365_AUTH"] == "client_secret"
    assert setup["env"]["D365_CLIENT_SECRET"] == "d365-from-vault"
    assert no_secret_on_a_command_line(run, "d365-given", "d365-from-vault")


def test_postprovision_waits_for_the_key_vault_role_to_apply(hooks):
    hooks.rules.insert(0, {"tool": "az", "match": ["secret", "set"], "fail_first": 2})
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "ad", "app", "federated-credential", "list", stdout="1\n")
    run = hooks.run("postprovision.sh", env={"ACS_CLIENT_SECRET": "given"})
    assert run.returncode == 0, run.stderr
    assert len(run.issued("az", "secret", "set")) == 3
    assert run.stderr.count("retrying in 0s") == 2


def test_postprovision_gives_up_when_the_key_vault_role_never_applies(hooks):
    hooks.rules.insert(0, {"tool": "az", "match": ["secret", "set"], "fail_first": 99})
    hooks.vault_holds({"webhook-shared-secret": "w"})
    run = hooks.run("postprovision.sh", env={"ACS_CLIENT_SECRET": "given"})
    assert run.returncode == 1
    assert len(run.issued("az", "secret", "set")) == 3  # ACSD365_RETRY_TRIES
    assert "cannot store acs-client-secret in kv-acsd365-abc" in run.stderr


def test_postprovision_carries_on_when_it_may_not_add_the_federated_credential(hooks):
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "ad", "app", "federated-credential", "list", rc=1, stderr="Insufficient privileges")
    hooks.answer("az", "ad", "app", "federated-credential", "create", rc=1, stderr="Insufficient privileges")
    run = hooks.run("postprovision.sh")
    assert run.returncode == 0, run.stderr
    assert f"subject  {SUBJECT}" in run.stderr and f"issuer   {ISSUER}" in run.stderr
    assert run.issued("python", "d365", "setup") != []


def test_postprovision_fails_when_d365_setup_fails(hooks):
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "ad", "app", "federated-credential", "list", stdout="1\n")
    hooks.answer("python", "d365", "setup", rc=2, stdout="failed: [entra] token request failed")
    run = hooks.run("postprovision.sh")
    assert run.returncode == 1
    assert "d365 setup failed" in run.stderr


# -- postdeploy -----------------------------------------------------------------------------------------


def test_postdeploy_registers_the_webhook_runs_acs_check_and_prints_the_status_endpoint(hooks):
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "functionapp", "function", "keys", "set", stdout="the-function-key\n")
    run = hooks.run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    [key] = run.issued("az", "function", "keys", "set")
    assert key["argv"] == [
        "functionapp", "function", "keys", "set", "--resource-group", "rg-acsd365-prod",
        "--name", "func-acsd365-abc", "--function-name", "webhook_d365", "--key-name", "dataverse",
        "--query", "value", "--output", "tsv",
    ]  # fmt: skip
    cli = run.argv_of("python")
    assert ["-m", "shared.cli", "d365", "setup", "--webhook-url", AZD_ENVIRONMENT["WEBHOOK_URL"],
            "--function-key=the-function-key"] in cli  # fmt: skip
    assert cli[-1] == ["-m", "shared.cli", "acs", "check"]
    assert AZD_ENVIRONMENT["STATUS_URL"] in run.stderr
    assert "azd env set FLOWS_ENABLED true" in run.stderr


def test_postdeploy_notes_a_missing_acs_check_and_carries_on(hooks):
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("python", "acs", "check", "--help", rc=2, stderr="invalid choice: 'acs'")
    run = hooks.run("postdeploy.sh", env={"FLOWS_ENABLED": "true"})
    assert run.returncode == 0, run.stderr
    assert "no 'acs check' command" in run.stderr
    assert ["-m", "shared.cli", "acs", "check"] not in run.argv_of("python")
    assert "FLOWS_ENABLED" not in run.stderr


def test_postdeploy_stops_before_the_code_is_there(hooks):
    hooks.vault_holds(SECRETS_IN_VAULT)
    hooks.answer("az", "function", "keys", "set", rc=1, stderr="(NotFound) Function webhook_d365 not found")
    run = hooks.run("postdeploy.sh")
    assert run.returncode == 1
    assert "is the code deployed?" in run.stderr
    assert run.issued("python", "d365", "setup") == []


# -- the hooks and the template agree ---------------------------------------------------------------------


def test_the_hooks_use_the_secret_names_the_bicep_references():
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    names = dict(
        re.findall(r"^\s+(\w+): '([a-z0-9-]+)'$", bicep.split("var secretNames = {")[1].split("}")[0], re.M)
    )
    common = (HOOKS / "common.sh").read_text()
    assert f"D365_SECRET_NAME={names['d365ClientSecret']}" in common
    assert f"ACS_SECRET_NAME={names['acsClientSecret']}" in common
    assert f"WEBHOOK_SECRET_NAME={names['webhookSharedSecret']}" in common


def test_every_hook_is_an_executable_posix_script():
    for hook in ("preprovision.sh", "postprovision.sh", "postdeploy.sh"):
        path = HOOKS / hook
        assert os.access(path, os.X_OK), hook
        assert subprocess.run(["/bin/sh", "-n", str(path)]).returncode == 0, hook
