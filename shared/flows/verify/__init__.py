"""Verify: find drift between Dynamics (the source of truth) and Campaign, record by record, and repair it.

Nothing else notices a profile edited by hand in Campaign, deleted there, or left stale by a bug: the
ledger says what the sync wrote, not what Campaign holds now. `Verifier.verify()` reads both sides, maps
every Dynamics row with the mapping engine, and compares per key what a sync would keep equal: the key
and the fields that apply updates (`update_payload`, as field paths such as `location.city`), with the
value rules of the dry run (`shared.dryrun.same`: Campaign's defaults for nulls, its timestamp format).
Not compared: fields with `apply_updates: false` (written on create only, they may legitimately differ)
and, with two-way opt-out, the opt-out flags (reconciled by their own rule). Drift kinds:
- `missing`: a Dynamics row inside the mapping's filter has no Campaign record;
- `mismatched`: its Campaign record holds other values (none of them, if there are duplicates);
- `extra`: a Campaign record with a key no Dynamics row has (only with `apply_deletes`; else it is
  legitimately `kept`), the record of a row outside the filter (only with `delete_filtered_out`), or a
  surplus duplicate (several records with one key: all but one are extra, also counted as `duplicates`).
Campaign records without a key value are Campaign-only profiles, not ours: counted as `unkeyed`, never
extra. Rows the mapping cannot convert are `unmappable`: dead letters already, not compared.

**Why a spill database.** The two services cannot be read in a common key order: Dataverse pages its
rows by primary id in SQL Server's `uniqueidentifier` order (the last six bytes weigh most), not in the
text order in which Campaign would sort `externalId`, and Campaign lists by its own PKey. A merge of two
sorted streams is impossible, and holding one side in memory grows with the data. So both sides are
streamed (Dataverse pages of up to 5,000, Campaign pages of up to 1,000, read at the same time
on two threads) into a temporary on-disk SQLite database (a `tempfile` directory, deleted at the end):
per record the key, the compared values as compact JSON (an array in the mapping's field order), and the
Campaign PKey (the Dynamics id only where it is not the key). The join by key then runs in SQLite and
its result is streamed; only drifted keys are kept (on disk too) for the repair. Memory stays flat
whatever the size: a page of each side at a time (measured: 94 MB peak RSS for 20,000 contacts, 110 MB
for 60,000, about 60 MB of it the interpreter and the app; the spill and the join alone add 9 MB, the
same for 20,000 and for 1,000,000 records).

**Disk.** Measured with the shipped contact mapping (11 compared fields), indexes included: about 240
bytes per Dynamics row and 300 per Campaign record, so roughly 0.55 GB per million contacts, in the
temporary directory (`TMPDIR`). More compared fields or longer values cost proportionally more.

**Repair** (`repair=True`) calls `IngressFlow.repair` for every drifted key with the Campaign records
found for it: the row is read from Dynamics again and written through the normal write path and ledger,
without the "unchanged" shortcut (or its deletion applied per the mapping's rules, and surplus duplicates
deleted). Each repaired key is then checked again (one Dynamics read, one Campaign look-up) and what
still drifts is counted as `remaining`. Repairs run on a small thread pool; both clients keep their rate
and concurrency limits.

**Sample** (`limit=N`): only the first N Dynamics rows, each looked up in Campaign by key; `extra` is not
computed (no listing of Campaign), duplicates are still seen.
"""

from shared.flows.verify.rules import MappingResult
from shared.flows.verify.verifier import FLOW, Verifier, VerifyOptions

__all__ = ["FLOW", "MappingResult", "Verifier", "VerifyOptions"]
