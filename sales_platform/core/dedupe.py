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
import pyarrow as pa
import pyarrow.compute as pc

CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_ts")


LOW_CARDINALITY = ("customer_id", "product_id")  # factorized first: few distinct values


def _column_hash(values: pd.Series, categorize: bool) -> np.ndarray:
    """pandas' hash of each value. A column of few distinct values held by Arrow is dictionary-
    encoded by Arrow and only its distinct values hashed: the same hashes as
    ``hash_array(..., categorize=True)``, without a Python string per row."""
    if categorize and isinstance(values.dtype, pd.ArrowDtype) and not values.hasnans:
        array = pa.array(values)
        if isinstance(array, pa.ChunkedArray):  # one dictionary for the whole column
            array = array.combine_chunks()
        encoded = pc.dictionary_encode(array)
        distinct = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False),
                                      categorize=False)
        return distinct[encoded.indices.to_numpy()]
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
        tids = _drain(self._tid_hashes)
        # One day-sized temporary (a sorted copy, 8 bytes per row) finds the repeated ids; only
        # their rows (usually ~1 %) are looked at past this point.
        repeated = _repeated_values(tids)
        if not len(repeated):
            self._content_hashes.clear()
            return DuplicateVerdict(np.array([], np.uint64), np.array([], np.int64), tids)
        dup_rows = _rows_holding(tids, repeated)  # ordinals of every copy, in scan order
        contents = _gather(self._content_hashes, dup_rows)
        dup_row_tids = tids[dup_rows]
        pairs = np.unique(np.stack([dup_row_tids, contents], axis=1), axis=0)
        tid_of_pair, copies = np.unique(pairs[:, 0], return_counts=True)
        conflicting = tid_of_pair[copies > 1]
        identical = np.setdiff1d(repeated, conflicting)
        ordinals = dup_rows[np.isin(dup_row_tids, identical)]
        # keep the first occurrence of each identical group, drop the others
        _, first_index = np.unique(tids[ordinals], return_index=True)
        drop = np.setdiff1d(ordinals, ordinals[first_index])
        return DuplicateVerdict(conflicting, drop, tids)


SLICE_ROWS = 1 << 20  # rows looked up at once: bounds the lookup's temporaries


def _drain(chunks: list[np.ndarray]) -> np.ndarray:
    """The chunks as one array, each chunk freed as soon as it is copied (no second full copy)."""
    out = np.empty(sum(len(c) for c in chunks), dtype=np.uint64)
    position = 0
    while chunks:
        chunk = chunks.pop(0)
        out[position:position + len(chunk)] = chunk
        position += len(chunk)
    return out


def _gather(chunks: list[np.ndarray], positions: np.ndarray) -> np.ndarray:
    """The values at ascending ``positions`` of the chunks taken as one array, each chunk freed
    once read (the whole array is never built)."""
    out = np.empty(len(positions), dtype=np.uint64)
    start = 0
    while chunks:
        chunk = chunks.pop(0)
        lo, hi = np.searchsorted(positions, [start, start + len(chunk)])
        out[lo:hi] = chunk[positions[lo:hi] - start]
        start += len(chunk)
    return out


def _repeated_values(values: np.ndarray) -> np.ndarray:
    """The values that occur more than once, sorted, unique."""
    ordered = np.sort(values)
    return np.unique(ordered[1:][ordered[1:] == ordered[:-1]])


def _rows_holding(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of ``values`` found in the sorted ``wanted``, ascending; a slice at a time."""
    found = []
    for start in range(0, len(values), SLICE_ROWS):
        part = values[start:start + SLICE_ROWS]
        index = np.minimum(np.searchsorted(wanted, part), len(wanted) - 1)
        found.append(np.flatnonzero(wanted[index] == part) + start)
    return np.concatenate(found)


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
