"""One data key and the primitives every crypto module shares (crypto.py, keyset.py, legacy.py).

The lowest of the crypto modules: it imports none of them, and each of them imports it. ``crypto``
re-exports these names, the crypto API's one place for its callers.
"""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

TINK_START_BYTE = 0x01
SIV_KEY_SIZE = 64
STREAM_KEY_SIZE = 32


class CryptoError(ValueError):
    """A token or sealed file cannot be decrypted with the keys at hand."""


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key() -> str:
    """A new random 256-bit master key, base64 encoded (the format of SALES_PLATFORM_ENCRYPTION_KEY)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def parse_master_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise CryptoError("encryption key is not valid base64") from exc
    if len(raw) < 16:
        raise CryptoError("encryption key must decode to at least 16 bytes")
    return raw


def key_id_text(number: int) -> str:
    """Key ids are shown as 8 hex digits (a Tink key id is a 32-bit number)."""
    return f"{number:08x}"


@dataclass(frozen=True)
class DataKey:
    """One key of the keyring: AES-SIV for tokens and an AES-GCM-HKDF streaming key for files.

    ``legacy`` keys (the previous format, derived from a master secret) only decrypt, for migration.
    """

    key_id: str
    siv: AESSIV
    stream_key: bytes = b""
    legacy_gcm: AESGCM | None = None

    @property
    def legacy(self) -> bool:
        return self.legacy_gcm is not None

    @property
    def number(self) -> int:
        return int(self.key_id, 16)

    @property
    def token_prefix(self) -> bytes:
        return bytes([TINK_START_BYTE]) + struct.pack(">I", self.number)

    @classmethod
    def from_material(cls, number: int, siv_key: bytes, stream_key: bytes) -> DataKey:
        if len(siv_key) != SIV_KEY_SIZE or len(stream_key) != STREAM_KEY_SIZE:
            raise CryptoError(f"key {key_id_text(number)}: wrong key sizes")
        return cls(key_id=key_id_text(number), siv=AESSIV(siv_key), stream_key=stream_key)
