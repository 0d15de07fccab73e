"""Durable state on Azure Storage: checkpoints and the record ledger in Table storage, dead letters and
run reports in Blob storage. `StateStore` bundles them; `StateStore.from_settings` wires the clients
(connection string for local dev, managed identity in Azure)."""

from shared.store.checkpoints import Checkpoint, CheckpointConflict, CheckpointStore
from shared.store.deadletters import DeadLetter, DeadLetterStore
from shared.store.failures import FailureBook, RetryLimits, Verdict
from shared.store.ledger import LedgerConflict, LedgerRecord, RecordLedger, RecordStatus
from shared.store.reports import RunReport, RunReportStore
from shared.store.state import StateStore

__all__ = [
    "Checkpoint",
    "CheckpointConflict",
    "CheckpointStore",
    "DeadLetter",
    "DeadLetterStore",
    "FailureBook",
    "LedgerConflict",
    "LedgerRecord",
    "RecordLedger",
    "RecordStatus",
    "RetryLimits",
    "RunReport",
    "RunReportStore",
    "StateStore",
    "Verdict",
]
