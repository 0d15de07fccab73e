"""Test harness: a complete, fake app-settings environment (set before anything imports
`shared.settings`, which validates at import as the Functions host would), and one Azurite per session."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.builders.settings_env import valid_environment

# Replace, not merge: a developer's own app settings must not leak into tests, nor their telemetry
# settings send the tests' telemetry to their Application Insights (the telemetry tests set their own).
_OWN_SETTINGS = {k.upper() for k in valid_environment()} | {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
for _name in list(os.environ):
    if _name.upper() in _OWN_SETTINGS:
        del os.environ[_name]
os.environ.update(valid_environment())

from emulators.azurite import Azurite  # noqa: E402
from shared.store import StateStore  # noqa: E402


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as running:
        yield running


@pytest.fixture
def state_store(azurite) -> StateStore:
    """A fresh, isolated state store (own tables and container) on the shared Azurite."""
    suffix = uuid.uuid4().hex[:10]
    return StateStore.connect(
        connection_string=azurite.connection_string, table_prefix=f"t{suffix}", container=f"state-{suffix}"
    )
