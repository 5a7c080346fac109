"""LEGACY, for migration only: readers of the previous token and file formats.

Before the Tink formats (see crypto.py), tokens were ``<key_id>~<b64url(AES-SIV(id))>`` with no
associated data, and files were sealed as ``SPSEAL1``: magic, key id, 7-byte nonce prefix, then
length-prefixed AES-GCM segments. Both used keys derived with HKDF from a master secret. This module
only *reads* them, so ``rotate-keys`` can move old data into the new formats; nothing writes them.
Delete it once every deployment has rotated (``key-status`` shows no legacy key id).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sales_platform.core.datakey import CryptoError, DataKey, b64d

TOKEN_SEPARATOR = "~"
SEAL_MAGIC = b"SPSEAL1\n"
KEY_ID_LENGTH = 8
NONCE_PREFIX_LEN = 7


class KeyLookup(Protocol):
    """What the readers need of a keyring (a keyset.Keyring holding the legacy keys): a key by id."""

    def key(self, key_id: str) -> DataKey: ...


def _derive(master: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(master)


def legacy_key_id(master: bytes) -> str:
    return hashlib.sha256(b"sales_platform key id" + master).hexdigest()[:KEY_ID_LENGTH]


def legacy_material(master: bytes) -> tuple[str, bytes, bytes]:
    """(key id, AES-SIV key, AES-GCM key) the previous format derived from a master secret."""
    if len(master) < 16:
        raise CryptoError("encryption key must be at least 128 bits")
    return (legacy_key_id(master), _derive(master, b"sales_platform token v1", 64),
            _derive(master, b"sales_platform seal v1", 32))


def legacy_key(key_id: str, siv_key: bytes, gcm_key: bytes) -> DataKey:
    return DataKey(key_id=key_id, siv=AESSIV(siv_key), legacy_gcm=AESGCM(gcm_key))


def is_legacy_token(value: str) -> bool:
    key_id, sep, body = value.partition(TOKEN_SEPARATOR)
    return bool(sep) and len(key_id) == KEY_ID_LENGTH and len(body) >= 22


def decrypt_token(keyring: KeyLookup, token: str) -> str:
    key_id, _, body = token.partition(TOKEN_SEPARATOR)
    try:
        return keyring.key(key_id).siv.decrypt(b64d(body), None).decode("utf-8")
    except (InvalidTag, ValueError) as exc:
        raise CryptoError(f"token with key id {key_id} does not decrypt") from exc


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def open_sealed(keyring: KeyLookup, source: BinaryIO) -> Iterator[bytes]:
    """An SPSEAL1 stream after its magic: key id, nonce prefix, segments (length, ciphertext)."""
    header = source.read(KEY_ID_LENGTH + NONCE_PREFIX_LEN)
    key = keyring.key(header[:KEY_ID_LENGTH].decode("ascii", errors="replace"))
    if key.legacy_gcm is None:
        raise CryptoError(f"key {key.key_id} is not a legacy key")
    prefix, counter = header[KEY_ID_LENGTH:], 0
    size_bytes = source.read(4)
    while True:
        if len(size_bytes) < 4:
            raise CryptoError("sealed file is truncated")
        ciphertext = source.read(struct.unpack(">I", size_bytes)[0])
        size_bytes = source.read(4)
        last = size_bytes == b""
        nonce = _nonce(prefix, counter, last)
        try:
            yield key.legacy_gcm.decrypt(nonce, ciphertext, nonce)
        except InvalidTag as exc:
            raise CryptoError("sealed file is corrupt or truncated") from exc
        if last:
            return
        counter += 1
