"""What a rotation knows of tokens and reports: the per-run token cache, recognising a token and its
key id (in a column or inside extras JSON), the report and its progress events."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sales_platform.core.crypto import (
    NOT_A_TOKEN,
    CryptoError,
    Tokenizer,
    b64d,
    key_id_of_token,
    key_id_text,
)
from sales_platform.core.legacy import KEY_ID_LENGTH, TOKEN_SEPARATOR
from sales_platform.core.schema import EXTRAS_COLUMN

TOKEN_HEAD = 9  # characters read to tell a token's key id: "<8 hex>~" (legacy) or 8 of base64url


class RotationError(RuntimeError):
    """A value cannot be rotated. The message names where, never the value (it may be plaintext)."""


@dataclass(frozen=True)
class BatchDone:
    """Reported to ``progress`` after each committed batch (or each rewritten file)."""

    target: str  # a table name, "staged token files" or "sealed files"
    items: int  # rows read in the batch, or 1 file
    rotated: int  # token values (or files) re-encrypted by it


@dataclass
class RotationReport:
    active_key_id: str
    values: Counter[str] = field(default_factory=Counter)  # "table.column" -> tokens re-encrypted
    rows: Counter[str] = field(default_factory=Counter)  # table -> rows touched
    merged_rows: Counter[str] = field(default_factory=Counter)  # table -> rows merged into a rotated row
    token_files: Counter[str] = field(default_factory=Counter)  # "staging/<layer>" -> files rewritten
    sealed_files: Counter[str] = field(default_factory=Counter)  # "staging/<layer>", "archive"
    batches: int = 0
    distinct_tokens: int = 0  # tokens decrypted and re-encrypted (once per batch or file)

    @property
    def total(self) -> int:
        return sum(self.values.values()) + sum(self.token_files.values()) + sum(self.sealed_files.values())

    def lines(self) -> list[str]:
        out = [f"active key {self.active_key_id}: {self.batches} batch(es), "
               f"{self.distinct_tokens} distinct token(s) re-encrypted"]
        for counts, what in ((self.values, "token value(s) re-encrypted"),
                             (self.merged_rows, "row(s) merged into an existing row"),
                             (self.token_files, "file(s) with tokens rewritten"),
                             (self.sealed_files, "sealed file(s) re-sealed")):
            out += [f"  {name}: {n} {what}" for name, n in sorted(counts.items())]
        if self.total == 0:
            out.append("  nothing to rotate: everything is under the active key")
        return out


Progress = Callable[[BatchDone], None]


class TokenCache:
    """Old token -> token under the active key; each distinct token is decrypted once."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.active = tokenizer.keyring.active.key_id
        self.done: dict[tuple[str, str], str] = {}

    def stale(self, value: object) -> bool:
        return isinstance(value, str) and key_id_of_token(value) != self.active

    def new(self, token: str, where: str, column: str) -> str:
        """``column`` names the associated data of the token (the column it belongs to)."""
        cached = (token, column)
        if cached not in self.done:
            try:
                self.done[cached] = self.tokenizer.reencrypt(token, column)
            except CryptoError:
                raise RotationError(f"{where}: a value under key id {key_id_of_token(token)} cannot be "
                                    f"decrypted with the keyring {self.tokenizer.keyring.key_ids}; its key "
                                    "is not in the keyset (or, for the previous format, not in "
                                    "SALES_PLATFORM_RETIRED_KEYS)") from None
        return self.done[cached]

    def rotate_json(self, text: str | None, keys: Sequence[str], where: str) -> str | None:
        """The JSON text with its stale tokens under ``keys`` re-encrypted; None when nothing changes."""
        def rotate(key: str, token: str) -> str:
            return self.new(token, f"{where}, key {key}", key) if self.stale(token) else token

        return map_json_tokens(text, keys, rotate)


def map_json_tokens(text: str | None, keys: Sequence[str], fn: Callable[[str, str], str]) -> str | None:
    """Apply ``fn(key, token)`` to the tokens under ``keys`` of a JSON object, also inside a nested
    extras JSON string (sales_rejects keeps a rescued row's extras that way). Returns the new text,
    or None when nothing changed or the text is not a JSON object."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    changed = False
    for key, value in data.items():
        new = value
        if key in keys and isinstance(value, str) and is_token_like(value):
            new = fn(key, value)
        elif key == EXTRAS_COLUMN and isinstance(value, str):
            new = map_json_tokens(value, keys, fn) or value
        if new != value:
            data[key], changed = new, True
    # the writers' own spelling (landing.rescue_extras, rejects._reject_records)
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str) if changed else None


def is_token_like(value: str) -> bool:
    return key_id_of_token(value) != NOT_A_TOKEN


def key_id_of_head(head: str) -> str:
    """The key id from a token's first TOKEN_HEAD characters (what the SQL counts group by)."""
    if len(head) > KEY_ID_LENGTH and head[KEY_ID_LENGTH] == TOKEN_SEPARATOR:
        return head[:KEY_ID_LENGTH]
    try:
        raw = b64d(head[:8]) if head.startswith("A") and len(head) >= 8 else b""
    except ValueError:
        raw = b""
    return key_id_text(int.from_bytes(raw[1:5], "big")) if raw[:1] == b"\x01" else NOT_A_TOKEN

