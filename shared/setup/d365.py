"""`d365 setup`: what Adobe needed consultants for, as one idempotent pass over the Dataverse Web API.

- the four Campaign email activity tables, their columns and the event-id alternate key, if absent;
- change tracking on every mapped Dynamics table (tables where it cannot be enabled are reported);
- the webhook: one `serviceendpoint` (the `webhook_d365` URL, authenticated with the function key) and,
  per mapped table, one asynchronous post-operation step per message (Create, Update, Delete) filtered
  on the mapped columns, with the post image the ingress flow reads. Steps are found again by name, so
  a second run updates what changed and duplicates nothing; steps of tables no longer mapped are removed.

`plan()` only reads and answers the actions; `apply()` carries them out in order; `run(dry_run=...)`
does both. Actions that change nothing (`ok`, `skip`, `warning`) are listed too, so the output shows
everything that was checked. The table checks are in `shared.setup.tables`, the webhook's in
`shared.setup.webhook`; this module puts them in order.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.d365.client import DataverseClient
from shared.mapping.model import SyncConfig
from shared.setup.action import SetupAction
from shared.setup.tables import activity_table_actions, change_tracking_actions
from shared.setup.webhook import WebhookRegistration, WebhookTarget


class D365Setup:
    def __init__(
        self,
        *,
        dataverse: DataverseClient,
        config: SyncConfig,
        webhook: WebhookTarget | None = None,
        optout_direction: str | None = None,
        solution: str | None = None,
    ) -> None:
        """:param optout_direction: the app setting's override of the sync config's opt-out direction.
        :param solution: unique name of the solution new tables and columns are added to (its publisher's
            prefix must match the `acs_` names); None: the organisation's default solution."""
        self.dataverse = dataverse
        self.config = config
        self.webhook = webhook
        self.optout_direction = optout_direction or config.optout.direction
        self.solution = solution

    def run(self, *, dry_run: bool = False) -> list[SetupAction]:
        actions = self.plan()
        if not dry_run:
            self.apply(actions)
        return actions

    def plan(self) -> list[SetupAction]:
        return [
            *activity_table_actions(
                self.dataverse, self.config.events.activity_tables, solution=self.solution
            ),
            *change_tracking_actions(self.dataverse, self.config.tables),
            *self._webhook(),
        ]

    @staticmethod
    def apply(actions: Iterable[SetupAction]) -> None:
        for action in actions:
            if action.apply is not None:
                action.apply()

    def _webhook(self) -> list[SetupAction]:
        if self.webhook is None:
            return [
                SetupAction(
                    "skip",
                    "webhook registration",
                    "pass --webhook-url and --function-key to register the webhook_d365 endpoint",
                )
            ]
        registration = WebhookRegistration(
            dataverse=self.dataverse,
            config=self.config,
            target=self.webhook,
            optout_direction=self.optout_direction,
        )
        return registration.plan()
