"""What the integration needs in Dynamics 365 (activity tables, change tracking, the webhook) and the
idempotent command that puts it there (`python -m shared.cli d365 setup`)."""
