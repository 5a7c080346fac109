"""Duplicate transaction ids across all rows of a partition, found with bounded memory.

Pass one records two 64-bit hashes per valid row (transaction id, full content); pass two marks
rows: every copy of a transaction id whose copies disagree is a conflicting duplicate; of copies
that agree, the first is kept and the rest are identical duplicates (collapsed). Memory is 16 bytes
per row, not a copy of the rows. Pass two needs only the hashes and row ordinals of pass one
(``DuplicateVerdict.keep``), so a chunk that holds no duplicate is never read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_ts")


LOW_CARDINALITY = ("customer_id", "product_id")  # factorized first: few distinct values


def _column_hash(values: pd.Series, categorize: bool) -> np.ndarray:
    return pd.util.hash_array(values.to_numpy(), categorize=categorize)


def _combine(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """Order-dependent mix of per-column hashes (hashes live for one scan: any good mix will do)."""
    out = first.copy()
    with np.errstate(over="ignore"):
        for other in others:
            out = (out * np.uint64(0x100000001B3)) ^ other
            out ^= out >> np.uint64(29)
    return out


@dataclass
class DuplicateScan:
    _tid_hashes: list[np.ndarray] = field(default_factory=list)
    _content_hashes: list[np.ndarray] = field(default_factory=list)

    def add(self, rows: pd.DataFrame) -> None:
        """Each column hashed once; the transaction id's hash is part of the content hash."""
        tid = _column_hash(rows["transaction_id"], categorize=False)
        self._tid_hashes.append(tid)
        self._content_hashes.append(_combine(tid, *(
            _column_hash(rows[c], categorize=c in LOW_CARDINALITY)
            for c in CONTENT_COLUMNS if c != "transaction_id")))

    def verdict(self) -> DuplicateVerdict:
        if not self._tid_hashes:
            return DuplicateVerdict(np.array([], np.uint64), np.array([], np.int64))
        tids = np.concatenate(self._tid_hashes)
        contents = np.concatenate(self._content_hashes)
        self._tid_hashes.clear()
        self._content_hashes.clear()
        # Only the rows of repeated ids (usually ~1 %) are looked at past this point; the
        # day-sized temporaries are dropped at once (peak memory grows ~26 bytes per row).
        order = np.argsort(tids, kind="stable")
        sorted_tids = tids[order]
        repeated = sorted_tids[1:] == sorted_tids[:-1]
        del sorted_tids
        if not repeated.any():
            return DuplicateVerdict(np.array([], np.uint64), np.array([], np.int64), tids)
        in_dup = np.zeros(len(tids), dtype=bool)
        in_dup[1:] |= repeated
        in_dup[:-1] |= repeated
        del repeated
        dup_rows = np.sort(order[in_dup])  # ordinals of every copy of a repeated id, in scan order
        del order, in_dup
        dup_row_tids = tids[dup_rows]
        dup_tids = np.unique(dup_row_tids)
        pairs = np.unique(np.stack([dup_row_tids, contents[dup_rows]], axis=1), axis=0)
        tid_of_pair, copies = np.unique(pairs[:, 0], return_counts=True)
        conflicting = tid_of_pair[copies > 1]
        identical = np.setdiff1d(dup_tids, conflicting)
        ordinals = dup_rows[np.isin(dup_row_tids, identical)]
        # keep the first occurrence of each identical group, drop the others
        _, first_index = np.unique(tids[ordinals], return_index=True)
        drop = np.setdiff1d(ordinals, ordinals[first_index])
        return DuplicateVerdict(conflicting, drop, tids)


@dataclass
class DuplicateVerdict:
    conflicting_tids: np.ndarray  # hashes of transaction ids whose copies disagree
    identical_extra_ordinals: np.ndarray  # row ordinals (in scan order) of collapsed copies
    tid_hashes: np.ndarray | None = None  # every row's id hash, in scan order (pass one)

    @property
    def any(self) -> bool:
        return bool(len(self.conflicting_tids) or len(self.identical_extra_ordinals))

    def reasons(self, first_ordinal: int, count: int) -> np.ndarray | None:
        """Reason per row of the chunk of ``count`` rows seen at ``first_ordinal`` (None = keep),
        from pass one's hashes alone; None when no row of the chunk is a duplicate."""
        if not self.any or self.tid_hashes is None:
            return None
        out = np.full(count, None, dtype=object)
        tids = self.tid_hashes[first_ordinal:first_ordinal + count]
        conflict = np.isin(tids, self.conflicting_tids) if len(self.conflicting_tids) else \
            np.zeros(count, dtype=bool)
        out[conflict] = "duplicate_conflicting"
        lo, hi = np.searchsorted(self.identical_extra_ordinals, [first_ordinal, first_ordinal + count])
        extra = self.identical_extra_ordinals[lo:hi] - first_ordinal
        extra = extra[~conflict[extra]]
        out[extra] = "duplicate_identical"
        return out if (conflict.any() or len(extra)) else None

    def classify(self, rows: pd.DataFrame, first_ordinal: int) -> pd.Series:
        """Reason per row of a chunk seen at ``first_ordinal`` in pass one (None = keep)."""
        reasons = pd.Series(np.full(len(rows), None, dtype=object), index=rows.index)
        if len(self.conflicting_tids):
            conflict = np.isin(_column_hash(rows["transaction_id"], categorize=False),
                               self.conflicting_tids)
            reasons[conflict] = "duplicate_conflicting"
        if len(self.identical_extra_ordinals):
            ordinals = np.arange(first_ordinal, first_ordinal + len(rows))
            extra = np.isin(ordinals, self.identical_extra_ordinals)
            reasons[extra & reasons.isna().to_numpy()] = "duplicate_identical"
        return reasons
