"""Encryption of identifiers and of files at rest.

- Identifiers (customer_id, product_id) become deterministic tokens with AES-SIV, so equal ids give
  equal tokens and the warehouse can still group and join on them. Token format: ``<key_id>~<b64url>``;
  the key id lets keys rotate (both keys decrypt during a rotation).
- Files the platform keeps (landed fragments, archived drops) are sealed with AES-GCM in segments
  (the STREAM construction: per-segment nonce = random prefix + counter, last-segment flag in the
  associated data), so large files never need to fit in memory and truncation is detected.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_SEPARATOR = "~"
SEAL_MAGIC = b"SPSEAL1\n"
SEGMENT_SIZE = 1 << 20
_NONCE_PREFIX_LEN = 7


class CryptoError(ValueError):
    """A token or sealed file cannot be decrypted with the keys at hand."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(master: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(master)


def generate_key() -> str:
    """A new random 256-bit master key, base64 encoded (the format of SALES_PLATFORM_ENCRYPTION_KEY)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def key_id_for(master: bytes) -> str:
    """A short public fingerprint of a master key, used as its key id in tokens."""
    return hashlib.sha256(b"sales_platform key id" + master).hexdigest()[:8]


@dataclass(frozen=True)
class DataKey:
    key_id: str
    siv: AESSIV
    gcm: AESGCM

    @classmethod
    def from_master(cls, master: bytes, key_id: str | None = None) -> DataKey:
        if len(master) < 16:
            raise CryptoError("encryption key must be at least 128 bits")
        return cls(
            key_id=key_id or key_id_for(master),
            siv=AESSIV(_derive(master, b"sales_platform token v1", 64)),
            gcm=AESGCM(_derive(master, b"sales_platform seal v1", 32)),
        )


def parse_master_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise CryptoError("encryption key is not valid base64") from exc
    if len(raw) < 16:
        raise CryptoError("encryption key must decode to at least 16 bytes")
    return raw


@dataclass
class Keyring:
    """The active key (encrypts) plus older keys (decrypt only, kept during a rotation)."""

    active: DataKey
    others: dict[str, DataKey] = field(default_factory=dict)

    @classmethod
    def from_secrets(cls, active: str, retired: Sequence[str] = ()) -> Keyring:
        active_key = DataKey.from_master(parse_master_key(active))
        others = {}
        for text in retired:
            key = DataKey.from_master(parse_master_key(text))
            others[key.key_id] = key
        return cls(active=active_key, others=others)

    def key(self, key_id: str) -> DataKey:
        if key_id == self.active.key_id:
            return self.active
        try:
            return self.others[key_id]
        except KeyError:
            raise CryptoError(f"no key with id {key_id!r} in the keyring") from None

    @property
    def key_ids(self) -> list[str]:
        return [self.active.key_id, *self.others]


class Tokenizer:
    """Deterministic authenticated encryption of identifier strings."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def encrypt(self, value: str) -> str:
        key = self.keyring.active
        return key.key_id + TOKEN_SEPARATOR + _b64e(key.siv.encrypt(value.encode("utf-8"), None))

    def decrypt(self, token: str) -> str:
        key_id, sep, body = token.partition(TOKEN_SEPARATOR)
        if not sep:
            raise CryptoError(f"not a token: {token[:16]!r}")
        try:
            return self.keyring.key(key_id).siv.decrypt(_b64d(body), None).decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise CryptoError(f"token with key id {key_id} does not decrypt") from exc

    def reencrypt(self, token: str) -> str:
        """Token under the active key (rotation); a token already under it is returned as is."""
        if token.startswith(self.keyring.active.key_id + TOKEN_SEPARATOR):
            return token
        return self.encrypt(self.decrypt(token))

    def encrypt_series(self, values: pd.Series) -> pd.Series:
        """Encrypt each distinct value once; missing values stay missing."""
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        if len(uniques) == 0:
            return pd.Series([None] * len(values), index=values.index, dtype=object)
        tokens = np.array([self.encrypt(str(v)) for v in uniques] + [None], dtype=object)
        return pd.Series(tokens[codes], index=values.index, dtype=object)

    def decrypt_series(self, tokens: pd.Series) -> pd.Series:
        codes, uniques = pd.factorize(tokens, use_na_sentinel=True)
        plain = np.array([self.decrypt(str(v)) for v in uniques] + [None], dtype=object)
        return pd.Series(plain[codes], index=tokens.index, dtype=object)


def is_token(value: str) -> bool:
    key_id, sep, body = value.partition(TOKEN_SEPARATOR)
    return bool(sep) and len(key_id) == 8 and len(body) >= 22


# --- files at rest -------------------------------------------------------------------------------

def _segment_nonce(prefix: bytes, counter: int, last: bool) -> tuple[bytes, bytes]:
    nonce = prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")
    return nonce, nonce


def seal_stream(key: DataKey, chunks: Iterable[bytes], out: BinaryIO) -> int:
    """Encrypt a byte stream segment by segment; returns plaintext bytes written."""
    prefix = os.urandom(_NONCE_PREFIX_LEN)
    out.write(SEAL_MAGIC + key.key_id.encode("ascii") + prefix)
    total, counter, pending = 0, 0, b""
    for chunk in _resegment(chunks):
        if pending:
            nonce, aad = _segment_nonce(prefix, counter, last=False)
            _write_segment(out, key.gcm.encrypt(nonce, pending, aad))
            counter += 1
        pending = chunk
        total += len(chunk)
    nonce, aad = _segment_nonce(prefix, counter, last=True)
    _write_segment(out, key.gcm.encrypt(nonce, pending, aad))
    return total


def _resegment(chunks: Iterable[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= SEGMENT_SIZE:
            yield bytes(buffer[:SEGMENT_SIZE])
            del buffer[:SEGMENT_SIZE]
    if buffer:
        yield bytes(buffer)


def _write_segment(out: BinaryIO, ciphertext: bytes) -> None:
    out.write(struct.pack(">I", len(ciphertext)))
    out.write(ciphertext)


def open_sealed(keyring: Keyring, source: BinaryIO) -> Iterator[bytes]:
    """Decrypt a sealed stream segment by segment; raises CryptoError on tampering or truncation."""
    header = source.read(len(SEAL_MAGIC) + 8 + _NONCE_PREFIX_LEN)
    if not header.startswith(SEAL_MAGIC):
        raise CryptoError("not a sealed file")
    key = keyring.key(header[len(SEAL_MAGIC) : len(SEAL_MAGIC) + 8].decode("ascii"))
    prefix = header[-_NONCE_PREFIX_LEN:]
    counter = 0
    while True:
        size_bytes = source.read(4)
        if len(size_bytes) < 4:
            raise CryptoError("sealed file is truncated")
        ciphertext = source.read(struct.unpack(">I", size_bytes)[0])
        last = source.peek(1) == b"" if hasattr(source, "peek") else _at_end(source)
        nonce, aad = _segment_nonce(prefix, counter, last=last)
        try:
            yield key.gcm.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise CryptoError("sealed file is corrupt or truncated") from exc
        if last:
            return
        counter += 1


def _at_end(source: BinaryIO) -> bool:
    position = source.tell()
    at_end = source.read(1) == b""
    source.seek(position)
    return at_end


def seal_bytes(key: DataKey, data: bytes) -> bytes:
    import io

    out = io.BytesIO()
    seal_stream(key, [data], out)
    return out.getvalue()


def open_sealed_bytes(keyring: Keyring, data: bytes) -> bytes:
    import io

    return b"".join(open_sealed(keyring, io.BytesIO(data)))


def seal_file(key: DataKey, source: Path, target: Path) -> None:
    """Seal ``source`` into ``target`` atomically (written beside, then renamed)."""
    tmp = target.with_name(target.name + ".partial")
    with open(source, "rb") as src, open(tmp, "wb") as out:
        seal_stream(key, iter(lambda: src.read(SEGMENT_SIZE), b""), out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)


def unseal_file(keyring: Keyring, source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as out:
        for chunk in open_sealed(keyring, src):
            out.write(chunk)
