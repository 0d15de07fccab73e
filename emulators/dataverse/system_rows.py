"""The organization's own rows: its two users (the application user a token acts as, and a person in the
UI), the SDK messages steps are registered for, and the message filters each data table gets; ids are
derived from fixed names, so every run of the same tenant has the same ones."""

from __future__ import annotations

import uuid

from .schema import Table
from .steps import MESSAGE_IDS
from .store import Clock, Store

_NS = uuid.UUID("1b671a64-40d5-491e-99b0-da01ff1f3341")


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


class SystemRows:
    """Writes the organization's own rows, created and modified by the application user at that moment."""

    def __init__(self, store: Store, clock: Clock, application_user_id: str) -> None:
        self.store = store
        self.clock = clock
        self.application_user_id = application_user_id

    def add_users(self, client_id: str, interactive_user_id: str) -> None:
        users = [
            (
                self.application_user_id,
                {
                    "fullname": "# Dataverse Emulator Integration",
                    "applicationid": client_id,
                    "domainname": f"{client_id}@emulator.example.com",
                },
            ),
            (interactive_user_id, {"fullname": "Pat Emulator", "domainname": "pat@example.com"}),
        ]
        self.store.bulk_insert(
            "systemuser",
            [
                (user_id, {"systemuserid": user_id, "isdisabled": False, **values, **self._stamp()})
                for user_id, values in users
            ],
        )

    def add_messages(self) -> None:
        self.store.bulk_insert(
            "sdkmessage",
            [
                (
                    message_id,
                    {"sdkmessageid": message_id, "name": name, "categoryname": "Data", **self._stamp()},
                )
                for name, message_id in MESSAGE_IDS.items()
            ],
        )

    def add_message_filters(self, table: Table) -> None:
        """The table's Create, Update and Delete filters: the `sdkmessagefilter` rows a step names."""
        rows = []
        for message, message_id in MESSAGE_IDS.items():
            filter_id = stable_id("filter", table.logical_name, message)
            if self.store.get("sdkmessagefilter", filter_id) is None:
                rows.append(
                    (
                        filter_id,
                        {
                            "sdkmessagefilterid": filter_id,
                            "name": f"{message} of {table.logical_name}",
                            "primaryobjecttypecode": table.logical_name,
                            "secondaryobjecttypecode": "none",
                            "iscustomprocessingstepallowed": True,
                            "sdkmessageid": ("sdkmessage", message_id),
                            **self._stamp(),
                        },
                    )
                )
        self.store.bulk_insert("sdkmessagefilter", rows)

    def _stamp(self) -> dict:
        now, system = self.clock.iso(), ("systemuser", self.application_user_id)
        return {"createdon": now, "modifiedon": now, "createdby": system, "modifiedby": system}
