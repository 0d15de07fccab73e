"""The flows' names: run reports, checkpoints and dead letters are filed under them. A module of its own
so that a flow can read another's checkpoint without importing it."""

CONTACTS_SYNC = "contacts_sync"
REPLAY = "replay"  # checkpoint rows (REPLAY, mapping) are replay requests for contacts_sync
OPTOUT_SYNC = "optout_sync"
EVENTS_PUSH = "events_push"
VERIFY_SYNC = "verify_sync"
WEBHOOK_D365 = "webhook_d365"  # the webhook's records in metrics; its ledger and letters are contacts_sync's
