"""Key rotation: every token and sealed file re-encrypted under the active key, resumably.

Deploy the new key as SALES_PLATFORM_ENCRYPTION_KEY with the old one in SALES_PLATFORM_RETIRED_KEYS,
then ``rotate_keys``. It rewrites, in order:

- the token columns of the warehouse, table by table, in batches (keyset pagination on the primary
  key, one transaction per batch). Only values not under the active key are selected, so a rerun
  after an interruption continues where the last committed batch stopped. Columns added to sales
  by schema evolution whose name the contract marks sensitive hold tokens too, as do sensitive keys
  inside the ``extras`` JSON columns;
- the plain Parquet files under staging/ that hold tokens (encrypted layer, rejects), atomically;
- the sealed files under staging/ and archive/ under another key or not yet bound to their name,
  atomically (written beside, then renamed), plus the off-machine archive copy when an
  ``archive_sink`` is given.

Tokens are deterministic (AES-SIV), so one plaintext maps to exactly one token per key: rotated
tables still group and join, and a rerun of the pipeline with the new key changes nothing.
Once ``token_counts_by_key`` and ``sealed_counts_by_key`` show only the active key, the retired key
can be removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from sales_platform.core.crypto import NOT_A_TOKEN, Keyring, Tokenizer
from sales_platform.core.rotation import files, tables, tokens
from sales_platform.core.rotation.files import (
    ROTATING_SUFFIX,
    SEALED_SUFFIX,
    STAGED_TOKEN_COLUMNS,
    reseal_file,
    sealed_counts_by_key,
    sealed_files,
    sealed_key_id,
    staged_token_counts_by_key,
    staged_token_files,
)
from sales_platform.core.rotation.tables import (
    TOKEN_TABLES,
    TokenTable,
    stale_rows,
    token_counts_by_key,
    token_tables,
)
from sales_platform.core.rotation.tokens import (
    BatchDone,
    Progress,
    RotationError,
    RotationReport,
    TokenCache,
    is_token_like,
    key_id_of_head,
    map_json_tokens,
)
from sales_platform.core.schema import DEFAULT_SENSITIVE
from sales_platform.core.store import DataAreas

__all__ = ["NOT_A_TOKEN", "ROTATING_SUFFIX", "SEALED_SUFFIX", "STAGED_TOKEN_COLUMNS", "TOKEN_TABLES",
           "BatchDone", "Progress", "RotationError", "RotationReport", "TokenCache", "TokenTable",
           "files", "is_token_like", "key_id_of_head", "map_json_tokens", "reseal_file",
           "rotate_keys", "sealed_counts_by_key", "sealed_files", "sealed_key_id",
           "staged_token_counts_by_key", "staged_token_files", "stale_rows", "tables",
           "token_counts_by_key", "token_tables", "tokens"]


def rotate_keys(engine: Engine, keyring: Keyring, areas: DataAreas | None, batch_size: int = 5000,
                progress: Progress | None = None,
                archive_sink: Callable[[str, Path], str] | None = None,
                now: datetime | None = None,
                sensitive: Sequence[str] = DEFAULT_SENSITIVE,
                accept_unbound: bool = True) -> RotationReport:
    """Re-encrypt every token and sealed file not under ``keyring.active`` (see the module doc).

    ``progress`` is called after each committed batch; if it raises, the rotation stops there and a
    rerun continues from the first value still under an old key. ``archive_sink`` (e.g. the blob
    resource's ``put_file``) receives each re-sealed archive file under ``archive/<name>``, like
    the raw_sales asset's archive copy. Rotated aggregate rows get ``refreshed_at = now``, so the
    next agg_exports run re-exports their years with the new tokens. ``sensitive`` is the schema
    contract's list of sensitive column names (their values are tokens too). ``accept_unbound``:
    sealed files that predate the name binding are re-sealed bound (the one-time upgrade); False
    once the keyset records that every file was bound (then such a file stops the rotation).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(active_key_id=keyring.active.key_id)
    tokenizer = Tokenizer(keyring)
    stamp = now or datetime.now()
    for spec in token_tables(engine, sensitive):
        tables.rotate_table(engine, spec, tokenizer, batch_size, stamp, report, progress)
    if areas is not None:
        # Exclusive locks: no landing or cleaning reads a file while it is being replaced.
        with areas.lock("intake"), areas.lock("landing"):
            files.rotate_token_files(areas, tokenizer, report, progress, tuple(sensitive))
            files.reseal_files(areas, keyring, report, progress, archive_sink, accept_unbound)
    return report
