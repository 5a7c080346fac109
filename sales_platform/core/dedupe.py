"""Duplicate transaction ids across all rows of a partition, found with bounded memory.

Pass one records two 64-bit hashes per valid row (transaction id, full content); pass two marks
rows: every copy of a transaction id whose copies disagree is a conflicting duplicate; of copies
that agree, the first is kept and the rest are identical duplicates (collapsed). Memory is 16 bytes
per row, not a copy of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_ts")


def _hash(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


@dataclass
class DuplicateScan:
    _tid_hashes: list[np.ndarray] = field(default_factory=list)
    _content_hashes: list[np.ndarray] = field(default_factory=list)

    def add(self, rows: pd.DataFrame) -> None:
        self._tid_hashes.append(_hash(rows[["transaction_id"]]))
        self._content_hashes.append(_hash(rows[list(CONTENT_COLUMNS)]))

    def verdict(self) -> DuplicateVerdict:
        if not self._tid_hashes:
            return DuplicateVerdict(np.array([], np.uint64), np.array([], np.int64))
        tids = np.concatenate(self._tid_hashes)
        contents = np.concatenate(self._content_hashes)
        self._tid_hashes.clear()
        self._content_hashes.clear()
        order = np.argsort(tids, kind="stable")
        sorted_tids = tids[order]
        repeated = np.zeros(len(tids), dtype=bool)
        repeated[1:] = sorted_tids[1:] == sorted_tids[:-1]
        if not repeated.any():
            return DuplicateVerdict(np.array([], np.uint64), np.array([], np.int64))
        dup_tids = np.unique(sorted_tids[repeated])
        in_dup = np.isin(tids, dup_tids)
        pairs = np.unique(np.stack([tids[in_dup], contents[in_dup]], axis=1), axis=0)
        tid_of_pair, copies = np.unique(pairs[:, 0], return_counts=True)
        conflicting = tid_of_pair[copies > 1]
        identical = np.setdiff1d(dup_tids, conflicting)
        ordinals = np.flatnonzero(np.isin(tids, identical))
        # keep the first occurrence of each identical group, drop the others
        _, first_index = np.unique(tids[ordinals], return_index=True)
        drop = np.setdiff1d(ordinals, ordinals[first_index])
        return DuplicateVerdict(conflicting, drop)


@dataclass
class DuplicateVerdict:
    conflicting_tids: np.ndarray  # hashes of transaction ids whose copies disagree
    identical_extra_ordinals: np.ndarray  # row ordinals (in scan order) of collapsed copies

    @property
    def any(self) -> bool:
        return bool(len(self.conflicting_tids) or len(self.identical_extra_ordinals))

    def classify(self, rows: pd.DataFrame, first_ordinal: int) -> pd.Series:
        """Reason per row of a chunk seen at ``first_ordinal`` in pass one (None = keep)."""
        reasons = pd.Series(np.full(len(rows), None, dtype=object), index=rows.index)
        if len(self.conflicting_tids):
            conflict = np.isin(_hash(rows[["transaction_id"]]), self.conflicting_tids)
            reasons[conflict] = "duplicate_conflicting"
        if len(self.identical_extra_ordinals):
            ordinals = np.arange(first_ordinal, first_ordinal + len(rows))
            extra = np.isin(ordinals, self.identical_extra_ordinals)
            reasons[extra & reasons.isna().to_numpy()] = "duplicate_identical"
        return reasons
