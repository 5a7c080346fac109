"""Encryption of identifiers and of files at rest, in Tink's published wire formats.

Both formats are implemented with `cryptography` (the runtime library) and proven against Tink (the
reference, used as the oracle in sales_platform_tests/test_tink_interop.py):

- Identifier tokens: AES-SIV (RFC 5297, 64-byte key) with the column name as associated data, in
  Tink's deterministic-AEAD output format ``0x01 || key id (4 bytes, big endian) || SIV ciphertext``,
  written to the warehouse as base64url without padding. Equal ids give equal tokens per column and
  key, so the warehouse can still group and join (``sales.product_id`` and ``dim_products`` both use
  the associated data ``product_id``). A Tink keyset holding the same key decrypts them.
- Sealed files: Tink's AES-GCM-HKDF streaming format (AES256_GCM_HKDF_1MB): header = header length
  byte (40) || 32-byte salt || 7-byte nonce prefix; segment key = HKDF-SHA256(key, salt, info =
  associated data); segment nonce = prefix || segment number (4 bytes) || last-segment byte;
  ciphertext segments of 1 MiB, the first shorter by the header. Tink's streaming ciphertexts carry
  no key id, so the keyring tries its keys on the first segment (primary first).
- Platform files are sealed under associated data naming the file (``file_binding``): its logical
  path under the data dir (``archive/<sha256>.csv.sealed``, ``staging/<layer>/<day>/<fragment>``).
  A file's bytes put in another file's place do not decrypt there. Files sealed before the binding
  (and SPSEAL1 files) are opened only by the rotation, which re-seals them bound.

Tokens and sealed files of the previous format (``<key_id>~<b64>``, SPSEAL1) are read by
``sales_platform.core.legacy`` for the migration only; nothing writes them any more.

The keys come from below: ``datakey.py`` (one data key and the shared primitives, re-exported here)
and ``keyset.py`` (the keyset document and the ``Keyring`` it yields). This module imports them and
``legacy``; none of them imports it.
"""

from __future__ import annotations

import base64
import io
import os
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sales_platform.core import legacy
from sales_platform.core.datakey import (  # noqa: F401  (re-exported: crypto is the crypto API's one place)
    SIV_KEY_SIZE,
    STREAM_KEY_SIZE,
    TINK_START_BYTE,
    CryptoError,
    DataKey,
    b64d,
    b64e,
    generate_key,
    key_id_text,
    parse_master_key,
)
from sales_platform.core.keyset import Keyring
from sales_platform.core.schema import DEFAULT_SENSITIVE

TINK_PREFIX_SIZE = 5
SEGMENT_SIZE = 1 << 20  # Tink's ciphertext segment size for AES256_GCM_HKDF_1MB
TAG_SIZE = 16
SIV_TAG_SIZE = 16  # AES-SIV's synthetic IV, before the ciphertext (as long as the plaintext)
NONCE_PREFIX_SIZE = 7
HEADER_SIZE = 1 + STREAM_KEY_SIZE + NONCE_PREFIX_SIZE
FIRST_PLAIN_SEGMENT = SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE
PLAIN_SEGMENT = SEGMENT_SIZE - TAG_SIZE
# Associated data of sealed files: binds them to their purpose. Platform files add their identity
# (file_binding); files sealed with this alone predate the binding and only the rotation opens them.
SEAL_AD = b"sales_platform sealed file"
UNBOUND = "(sealed before the name binding)"
ARCHIVE_NAME = re.compile(r"[0-9a-f]{64}\.csv\.sealed")
NOT_A_TOKEN = "(not a token)"
UNKNOWN_KEY = "(no key in the keyring)"
# The associated data of token columns that hold another column's ids.
AD_ALIASES = {"product_token": "product_id", "customer_token": "customer_id"}
# Tried in turn when a token is decrypted without its column (the CLI, tests); writers always pass it.
GUESSED_COLUMNS = ("customer_id", "product_id", "raw_text", *DEFAULT_SENSITIVE)


def token_length(plaintext_bytes: int) -> int:
    """Characters of the token of a ``plaintext_bytes``-byte value: base64url without padding of
    the Tink prefix, the SIV and the ciphertext (warehouse token columns are sized from it)."""
    return -(-(TINK_PREFIX_SIZE + SIV_TAG_SIZE + plaintext_bytes) * 4 // 3)


def ad_column(column: str) -> str:
    return AD_ALIASES.get(column, column)


# --- tokens --------------------------------------------------------------------------------------

def key_id_of_token(value: str) -> str:
    """The key id of a token (new or legacy format), or NOT_A_TOKEN."""
    if legacy.is_legacy_token(value):
        return value.partition(legacy.TOKEN_SEPARATOR)[0]
    if len(value) < 28 or not value.startswith("A"):
        return NOT_A_TOKEN
    try:
        head = b64d(value[:8])
    except ValueError:
        return NOT_A_TOKEN
    return key_id_text(struct.unpack(">I", head[1:5])[0]) if head[0] == TINK_START_BYTE else NOT_A_TOKEN


def token_prefixes(key_id: str) -> tuple[str, ...]:
    """The text prefixes every token under ``key_id`` starts with (for SQL LIKE): base64 puts the
    5-byte Tink prefix in 6 2/3 characters, so the 7th character takes one of four values."""
    head = bytes([TINK_START_BYTE]) + struct.pack(">I", int(key_id, 16))
    return tuple(b64e(head + bytes([top]))[:7] for top in (0x00, 0x40, 0x80, 0xC0))


def is_token(value: str) -> bool:
    return key_id_of_token(value) != NOT_A_TOKEN


class Tokenizer:
    """Deterministic authenticated encryption of identifier strings, one associated data per column."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def encrypt(self, value: str, column: str) -> str:
        key = self.keyring.active
        ad = [ad_column(column).encode("utf-8")]
        return b64e(key.token_prefix + key.siv.encrypt(value.encode("utf-8"), ad))

    def decrypt(self, token: str, column: str | None = None) -> str:
        """Without ``column`` the usual token columns are tried in turn (the CLI does not know it)."""
        if legacy.is_legacy_token(token):
            return legacy.decrypt_token(self.keyring, token)
        key_id = key_id_of_token(token)
        if key_id == NOT_A_TOKEN:
            raise CryptoError(f"not a token: {token[:12]!r}...")
        key = self.keyring.key(key_id)
        body = b64d(token)[TINK_PREFIX_SIZE:]
        for candidate in (ad_column(column),) if column else GUESSED_COLUMNS:
            try:
                return key.siv.decrypt(body, [candidate.encode("utf-8")]).decode("utf-8")
            except InvalidTag:
                continue
        where = f" for column {column}" if column else ""
        raise CryptoError(f"token with key id {key_id} does not decrypt{where}")

    def reencrypt(self, token: str, column: str) -> str:
        """Token under the active key (rotation); a token already under it is returned as is."""
        if key_id_of_token(token) == self.keyring.active.key_id:
            return token
        return self.encrypt(self.decrypt(token, column), column)

    def encrypt_many(self, values: Sequence[str], column: str) -> list[str]:
        """Tokens of ``values`` (strings), bit-identical to ``encrypt`` one by one, with the per-value
        work cut to one AES-SIV call and one base64 call (locals bound once, no str() round trip)."""
        key, ad = self.keyring.active, [ad_column(column).encode("utf-8")]
        encrypt, prefix, encode = key.siv.encrypt, key.token_prefix, base64.urlsafe_b64encode
        return [encode(prefix + encrypt(v.encode("utf-8"), ad)).rstrip(b"=").decode("ascii")
                for v in values]

    def encrypt_series(self, values: pd.Series, column: str | None = None) -> pd.Series:
        """Encrypt each distinct value once (the hot path); missing values stay missing.
        ``column`` defaults to the series' name."""
        column = column or values.name
        if not isinstance(column, str):
            raise ValueError("encrypt_series needs the column name (associated data of the tokens)")
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        tokens = np.empty(len(uniques) + 1, dtype=object)  # the last slot (code -1) stays None
        tokens[:-1] = self.encrypt_many([v if isinstance(v, str) else str(v) for v in uniques], column)
        return pd.Series(tokens[codes], index=values.index, dtype=object)

    def decrypt_series(self, tokens: pd.Series, column: str | None = None) -> pd.Series:
        codes, uniques = pd.factorize(tokens, use_na_sentinel=True)
        plain = np.array([self.decrypt(str(v), column) for v in uniques] + [None], dtype=object)
        return pd.Series(plain[codes], index=tokens.index, dtype=object)


# --- files at rest: Tink's AES-GCM-HKDF streaming format ----------------------------------------

def _segment_key(stream_key: bytes, salt: bytes, associated_data: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=STREAM_KEY_SIZE, salt=salt,
                   info=associated_data).derive(stream_key)
    return AESGCM(derived)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def _plain_segments(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext cut at Tink's segment sizes (the first is shorter by the header)."""
    buffer, size = bytearray(), FIRST_PLAIN_SEGMENT
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
            size = PLAIN_SEGMENT
    yield bytes(buffer)  # possibly empty: Tink ends an exact multiple with its last full segment


def seal_stream(key: DataKey, chunks: Iterable[bytes], out: BinaryIO,
                associated_data: bytes = SEAL_AD) -> int:
    """Encrypt a byte stream segment by segment; returns plaintext bytes written."""
    if key.legacy:
        raise CryptoError(f"key {key.key_id} is a legacy key: it only decrypts")
    salt, prefix = os.urandom(STREAM_KEY_SIZE), os.urandom(NONCE_PREFIX_SIZE)
    gcm = _segment_key(key.stream_key, salt, associated_data)
    out.write(bytes([HEADER_SIZE]) + salt + prefix)
    segments = _plain_segments(chunks)
    pending, counter, total = next(segments), 0, 0
    for segment in segments:
        if not segment:  # the stream ended exactly at a boundary: ``pending`` is the last segment
            break
        out.write(gcm.encrypt(_nonce(prefix, counter, False), pending, None))
        total, counter, pending = total + len(pending), counter + 1, segment
    out.write(gcm.encrypt(_nonce(prefix, counter, True), pending, None))
    return total + len(pending)


def _read_exact(source: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = source.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _header(source: BinaryIO) -> tuple[bytes, bytes]:
    header = _read_exact(source, HEADER_SIZE)
    if len(header) < HEADER_SIZE or header[0] != HEADER_SIZE:
        raise CryptoError("not a sealed file (no AES-GCM-HKDF streaming header)")
    return header[1:1 + STREAM_KEY_SIZE], header[1 + STREAM_KEY_SIZE:]


def _find_key(keyring: Keyring, salt: bytes, prefix: bytes, first: bytes, last: bool,
              associated_data: Sequence[bytes]) -> tuple[DataKey, AESGCM, bytes]:
    """The key that opens the first segment (Tink's streaming ciphertexts carry no key id), under
    the first of ``associated_data`` that fits."""
    for ad in associated_data:
        for key in keyring.keys():
            if key.legacy:
                continue
            gcm = _segment_key(key.stream_key, salt, ad)
            try:
                return key, gcm, gcm.decrypt(_nonce(prefix, 0, last), first, None)
            except InvalidTag:
                continue
    raise CryptoError("sealed file does not decrypt with any key in the keyring "
                      "(wrong key or associated data, or the file is truncated or corrupt)")


def open_sealed(keyring: Keyring, source: BinaryIO, associated_data: bytes = SEAL_AD,
                also_accept: Sequence[bytes] = (), allow_legacy: bool = True) -> Iterator[bytes]:
    """Decrypt a sealed stream segment by segment; raises CryptoError on tampering or truncation.
    ``also_accept``: other associated data tried after ``associated_data`` (the rotation's upgrade
    of unbound files). Files of the previous format (SPSEAL1, no associated data) are read by the
    legacy reader unless ``allow_legacy`` is False."""
    start = _read_exact(source, len(legacy.SEAL_MAGIC))
    if start == legacy.SEAL_MAGIC:
        if not allow_legacy:
            raise CryptoError("sealed in the previous format (SPSEAL1)")
        yield from legacy.open_sealed(keyring, source)
        return
    source = _Prepended(start, source)
    salt, prefix = _header(source)
    segment = _read_exact(source, SEGMENT_SIZE - HEADER_SIZE)
    following = _read_exact(source, SEGMENT_SIZE)
    _, gcm, plain = _find_key(keyring, salt, prefix, segment, not following,
                              (associated_data, *also_accept))
    yield plain
    counter = 1
    while following:
        segment, following = following, _read_exact(source, SEGMENT_SIZE)
        try:
            yield gcm.decrypt(_nonce(prefix, counter, not following), segment, None)
        except InvalidTag as exc:
            raise CryptoError(f"sealed file is corrupt, reordered or truncated at segment {counter}") from exc
        counter += 1


class _Prepended(io.RawIOBase):
    """``source`` with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self.head, self.source = head, source

    def read(self, size: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head[:size], self.head[size:]
            return out
        return self.source.read(size)


def sealed_key_id(keyring: Keyring, source: BinaryIO, associated_data: bytes = SEAL_AD) -> str:
    """Which key of the keyring opens a sealed stream (its first segment is decrypted)."""
    start = _read_exact(source, len(legacy.SEAL_MAGIC))
    if start == legacy.SEAL_MAGIC:
        return _read_exact(source, legacy.KEY_ID_LENGTH).decode("ascii", errors="replace")
    source = _Prepended(start, source)
    try:
        salt, prefix = _header(source)
        segment = _read_exact(source, SEGMENT_SIZE - HEADER_SIZE)
        last = not source.read(1)
        return _find_key(keyring, salt, prefix, segment, last, (associated_data,))[0].key_id
    except CryptoError:
        return UNKNOWN_KEY


def seal_bytes(key: DataKey, data: bytes, associated_data: bytes = SEAL_AD) -> bytes:
    out = io.BytesIO()
    seal_stream(key, [data], out, associated_data)
    return out.getvalue()


def open_sealed_bytes(keyring: Keyring, data: bytes, associated_data: bytes = SEAL_AD) -> bytes:
    return b"".join(open_sealed(keyring, io.BytesIO(data), associated_data))


# --- the platform's files: bound to their identity -------------------------------------------------

def file_binding(identity: str) -> bytes:
    """Associated data of the platform file ``identity`` (its logical path under the data dir)."""
    return SEAL_AD + b"\x00" + identity.encode("utf-8")


def archive_identity(name: str) -> str:
    return f"archive/{name}"


def fragment_identity(layer: str, day: str, name: str) -> str:
    """A fragment's identity is where it is published, also while it is written in a work folder."""
    return f"staging/{layer}/{day}/{name}"


def sealed_identity(path: Path) -> str:
    """The identity of a sealed file from where it lies: ``archive/<name>`` (or a content-addressed
    archive name anywhere, e.g. the blob copy), ``staging/<layer>/<day>/<name>``."""
    path = Path(path)
    if path.parent.name == "manifests" and path.parent.parent.name == "archive":
        return f"archive/manifests/{path.name}"  # an arrival's manifest (core/archive_manifest.py)
    if ARCHIVE_NAME.fullmatch(path.name) or path.parent.name == "archive":
        return archive_identity(path.name)
    if len(path.parts) >= 4 and path.parts[-4] == "staging":
        return "/".join(path.parts[-4:])
    raise CryptoError(f"{path}: not a place the platform keeps sealed files (archive/<sha256>.csv.sealed, "
                      "archive/manifests/<manifest> or staging/<layer>/<day>/<fragment>), so it cannot "
                      "be opened as one of them")


def _binding_error(keyring: Keyring, head: bytes, identity: str) -> CryptoError:
    """Why a platform file does not open as ``identity``; an unbound file is named, never read."""
    upgrade = ("it predates the name binding: run `sales-platform rotate-keys` once to re-seal such "
               "files (docs/runbook.md#rotate-keys)")
    if head.startswith(legacy.SEAL_MAGIC):
        return CryptoError(f"{identity} is sealed in the previous format (SPSEAL1); {upgrade}")
    if sealed_key_id(keyring, io.BytesIO(head), SEAL_AD) != UNKNOWN_KEY:
        return CryptoError(f"{identity} is sealed without its name; {upgrade}")
    return CryptoError(f"{identity} does not decrypt as itself: wrong key, another file's bytes put "
                       "in its place, or a truncated or corrupt file")


def _open_bound(keyring: Keyring, source: BinaryIO, identity: str) -> Iterator[bytes]:
    """``source`` (seekable) opened as ``identity``; a first segment that does not open is diagnosed."""
    chunks = open_sealed(keyring, source, file_binding(identity), allow_legacy=False)
    try:
        first = next(chunks)
    except CryptoError:
        source.seek(0)
        raise _binding_error(keyring, _read_exact(source, SEGMENT_SIZE + 1), identity) from None
    yield first
    yield from chunks


def open_platform_bytes(keyring: Keyring, data: bytes, identity: str) -> bytes:
    """A platform file's plaintext, if ``data`` was sealed as ``identity`` (else CryptoError)."""
    return b"".join(_open_bound(keyring, io.BytesIO(data), identity))


def open_platform_file(keyring: Keyring, path: Path, identity: str | None = None) -> Iterator[bytes]:
    """A platform file's plaintext, streamed; ``identity`` defaults to the one its place gives."""
    identity = identity or sealed_identity(path)
    with open(path, "rb") as source:
        yield from _open_bound(keyring, source, identity)


def seal_file(key: DataKey, source: Path, target: Path, identity: str,
              durable: bool = True) -> None:
    """Seal ``source`` into ``target`` as ``identity``, atomically (written beside, then renamed);
    ``durable=False`` leaves the fsync to the caller (a batch synced at once)."""
    from sales_platform.core.private_files import create_private

    tmp = target.with_name(target.name + ".partial")
    with open(source, "rb") as src, os.fdopen(create_private(tmp), "wb") as out:
        seal_stream(key, iter(lambda: src.read(SEGMENT_SIZE), b""), out, file_binding(identity))
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, target)


def unseal_file(keyring: Keyring, source: Path, target: Path, identity: str | None = None) -> None:
    with open(target, "wb") as out:
        for chunk in open_platform_file(keyring, source, identity):
            out.write(chunk)
