"""The Web API error envelope: ``{"error": {"code": "0x8004....", "message": "..."}}``."""

from __future__ import annotations

# Codes the real service uses for these situations.
QUERY_SYNTAX = "0x80060888"  # unknown segment / property / unsupported query option
PAYLOAD = "0x80048d19"  # payload cannot be converted to the column's type
NOT_FOUND = "0x80040217"
DUPLICATE = "0x80040237"
VERSION_MISMATCH = "0x80060882"
LENGTH = "0x80044331"
OPTION_RANGE = "0x8004431a"
INVALID_ARGUMENT = "0x80040203"
EXPIRED_VERSION_STAMP = "0x80044352"
INVALID_VERSION_STAMP = "0x80044183"
CHANGE_TRACKING_QUERY = "0x80060888"
REQUESTS_LIMIT = "0x80072322"
CONCURRENCY_LIMIT = "0x80072326"
UNEXPECTED = "0x80040216"
PLUGIN_FAILED = "0x80040265"
DUPLICATE_NAME = "0x80047013"


class ApiError(Exception):
    """Raised anywhere below the HTTP layer; rendered as the error envelope with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def envelope(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = INVALID_ARGUMENT) -> ApiError:
    return ApiError(400, code, message)


def unknown_property(name: str, table: str) -> ApiError:
    return ApiError(
        400,
        QUERY_SYNTAX,
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table}'.",
    )


def unknown_segment(name: str) -> ApiError:
    return ApiError(404, QUERY_SYNTAX, f"Resource not found for the segment '{name}'.")


def row_not_found(table: str, row_id: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"Entity '{table}' With Id = {row_id} Does Not Exist")
