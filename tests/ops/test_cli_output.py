"""The CLI people expect: `--help` on every command, one JSON document with `--json`, a non-zero exit
on failure, and the `acsd365` console script (pyproject.toml) running the same `main`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shared.cli import COMMANDS, FAILED, OK, WARNINGS, main
from shared.setup.d365 import D365Setup
from tests.builders.sync_config import EMAIL, LAST_NAME, cli, contacts_mapping, sync_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = sync_config(contacts_mapping(LAST_NAME, EMAIL))
# `acs check` is part A's (Campaign set-up): its own tests cover its output.
OTHER_OWNERS = {"shared.cli.acs"}


def help_of(*words: str, capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_naming_its_json_option(name, capsys):
    text = help_of(*name.split(), capsys=capsys)

    assert text.startswith(f"usage: python -m shared.cli {name} ")
    assert "--json" in text and COMMANDS[name].help.split()[0] in text


def test_every_command_group_has_help_listing_its_commands(capsys):
    groups = {name.split()[0] for name in COMMANDS if " " in name}
    for group in groups:
        text = help_of(group, capsys=capsys)
        leaves = [name.split()[1] for name in COMMANDS if name.startswith(group + " ")]
        assert all(leaf in text for leaf in leaves), (group, text)


def test_every_command_prints_one_json_document_with_json(stack, make_app):
    ids = [i.lower() for i in stack.dataverse.seed_contacts(4, seed=91)]
    bad = stack.dataverse.create_row("contact", {"lastname": "Typo", "emailaddress1": "no-at-sign"}).lower()
    app = make_app(CONFIG)
    D365Setup(dataverse=app.dataverse, config=app.config).run()
    app.ingress.run()
    invocations = {
        "validate-config": [],
        "dry-run": ["--table", "contacts", "--limit", "2"],
        "verify": [],
        "resync": ["contacts", ids[0]],
        "replay": ["--table", "contacts"],
        "status": [],
        "d365 setup": ["--dry-run"],
        "deadletters list": [],
        "deadletters show": [bad],
        "deadletters retry": ["--id", bad],
        "deadletters delete": [bad, "--yes"],
        "checkpoint reset": ["--flow", "replay", "--stream", "contacts", "--yes"],
    }
    assert set(invocations) == {n for n, c in COMMANDS.items() if c.run.__module__ not in OTHER_OWNERS}

    outputs = {}
    for name, arguments in invocations.items():
        code, out = cli(app, *name.split(), *arguments, "--json")
        outputs[name] = json.loads(out)  # the whole output is one document
        assert code in (OK, WARNINGS), (name, code, out)

    assert outputs["validate-config"]["failed"] == 0 and outputs["d365 setup"]["changes"] == 0
    assert outputs["resync"]["outcome"] == "unchanged"
    assert outputs["deadletters list"][0]["record_id"] == bad
    assert outputs["deadletters retry"]["letters"][0]["outcome"] == "dead"
    assert outputs["deadletters delete"]["letters"][0]["ledger_row"] == "deleted"
    assert outputs["checkpoint reset"]["reset"] is True
    assert {m["mapping"] for m in outputs["verify"]["mappings"]} == {"contacts"}
    assert (
        outputs["status"]["flows"]["contacts_sync"]["backlog"]["tables"]["contacts"]["dead"] == 1
    )  # before the delete


def test_a_failure_exits_2_with_the_reason_as_text_or_as_json(stack, make_app):
    app = make_app(CONFIG)

    code, out = cli(app, "dry-run", "--table", "leads")
    assert (code, out) == (
        FAILED,
        "failed: no table mapping named or reading 'leads'; mapped: contacts (contact)\n",
    )
    code, out = cli(app, "dry-run", "--table", "leads", "--json")
    assert code == FAILED
    assert json.loads(out) == {
        "failed": "no table mapping named or reading 'leads'; mapped: contacts (contact)"
    }
    code, out = cli(app, "checkpoint", "reset", "--flow", "contacts_sync", "--stream", "contacts", "--json")
    assert code == FAILED and json.loads(out)["failed"] == "no such checkpoint"


def test_the_acsd365_console_script_of_pyproject_is_the_cli_main(capsys):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, _, attribute = project["scripts"]["acsd365"].partition(":")

    entry = getattr(importlib.import_module(module), attribute)

    assert entry is main
    assert help_of("status", capsys=capsys).startswith("usage: python -m shared.cli status")


def test_the_installed_acsd365_script_answers_help_and_fails_clearly_without_settings(tmp_path):
    script = Path(sys.executable).parent / "acsd365"
    if not script.exists():
        pytest.skip("acsd365 is installed by `make setup` (pip install -e .)")
    environment = {"PATH": str(script.parent), "HOME": str(tmp_path)}  # no app settings at all

    helped = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=tmp_path, env=environment)
    failed = subprocess.run(
        [script, "status", "--json"], capture_output=True, text=True, cwd=tmp_path, env=environment
    )

    assert helped.returncode == 0 and helped.stdout.startswith("usage: acsd365 [-h] COMMAND")
    assert "resync" in helped.stdout and "deadletters" in helped.stdout
    assert failed.returncode == FAILED
    assert json.loads(failed.stdout)["failed"].startswith("Invalid app settings")
