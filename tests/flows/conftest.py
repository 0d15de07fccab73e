"""Fixtures for end-to-end flow tests: the whole local stack (Azurite + both emulators) and a way to
point the process-global app (what the function folders call) at it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulators.stack import Stack
from shared.app import App, get_app
from shared.settings import get_settings, load_settings


@pytest.fixture
def stack(azurite, request) -> Stack:
    """A fresh Dataverse and Campaign emulator per test (options via `@pytest.mark.parametrize`-free
    indirect use: `stack_options` fixture override), sharing the session's Azurite."""
    options = getattr(request, "param", {}) or {}
    with Stack(azurite=azurite, **options) as running:
        yield running


@pytest.fixture
def make_app(stack) -> Callable[..., App]:
    """Build an `App` on the stack without touching process-global state."""

    def build(sync_config: dict | None = None, **overrides) -> App:
        return App(load_settings(stack.app_settings(sync_config=sync_config, **overrides)))

    return build


@pytest.fixture
def function_app_env(stack, monkeypatch) -> Callable[..., App]:
    """Point the process-global app (used by the function folders and the local host) at the stack."""

    def configure(sync_config: dict | None = None, **overrides) -> App:
        for name, value in stack.app_settings(sync_config=sync_config, **overrides).items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        get_app.cache_clear()
        return get_app()

    yield configure
    get_settings.cache_clear()
    get_app.cache_clear()
