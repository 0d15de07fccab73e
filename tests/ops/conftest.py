"""The end-to-end fixtures of the flow tests (the local stack, apps on it), shared with the ops tests."""

from tests.flows.conftest import function_app_env, make_app, stack

__all__ = ["function_app_env", "make_app", "stack"]
