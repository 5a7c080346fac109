"""The keyset document: every data key the platform has, wrapped under a master key.

The document (JSON) lists keys by id (a 32-bit number, shown as 8 hex digits), one of them primary
(it encrypts); the others decrypt until a rotation has moved everything to the primary and retired
them (status ``disabled``: kept for the record, no longer used). Each key holds a 64-byte AES-SIV key
(tokens) and a 32-byte AES-GCM-HKDF streaming key (sealed files); ``legacy`` keys hold the previous
format's derived keys and only decrypt (migration). ``tink_json`` exports the keys as Tink JSON
keysets (deterministic AEAD and streaming AEAD), for interoperability and the tests. A ``Keyring`` is
the keys in use: the primary and the enabled keys that still decrypt.

On disk the document is wrapped with AES key wrap with padding (RFC 5649) under a key derived
(HKDF-SHA256) from the master key, which comes from SALES_PLATFORM_ENCRYPTION_KEY or the file named by
SALES_PLATFORM_ENCRYPTION_KEY_FILE (in production: a Key Vault secret, see docs/security.md).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from sales_platform.core import legacy, settings
from sales_platform.core.datakey import (
    SIV_KEY_SIZE,
    STREAM_KEY_SIZE,
    CryptoError,
    DataKey,
    generate_key,
    key_id_text,
    parse_master_key,
)

FORMAT = "sales_platform keyset v1"
ENABLED, DISABLED = "enabled", "disabled"
TINK, LEGACY = "tink", "legacy-v1"
KEYSET_FILE = "keys/keyset.json"  # under the data dir unless SALES_PLATFORM_KEYSET_FILE says otherwise
SIV_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesSivKey"
STREAM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
# AesGcmHkdfStreamingKey protobuf up to key_value: params {segment 1 MiB, derived key 32, HKDF SHA256}
_STREAM_PROTO_HEAD = bytes.fromhex("120808808040102018031a20")
_SIV_PROTO_HEAD = bytes.fromhex("1240")  # AesSivKey: field 2 (key_value), 64 bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class Keyring:
    """The primary key (encrypts) plus older keys (decrypt only, kept during a rotation)."""

    active: DataKey
    others: dict[str, DataKey] = field(default_factory=dict)

    @classmethod
    def from_secrets(cls, active: str, retired: Sequence[str] = ()) -> Keyring:
        """The keyring a new keyset for master key ``active`` starts with (its derived first key, see
        Keyset.initial), plus the keys ``retired`` master keys gave, and for each of them the
        previous format's key (migration)."""
        masters = [parse_master_key(active), *(parse_master_key(k) for k in retired)]
        keys = [Keyset.initial(master).keyring().active for master in masters]
        keys += [legacy.legacy_key(*legacy.legacy_material(master)) for master in masters]
        return cls(active=keys[0], others={k.key_id: k for k in keys[1:]})

    @classmethod
    def generate(cls) -> Keyring:
        """A fresh one-key keyring in memory (benchmarks, tests); the platform loads its keyset."""
        return Keyset.new().keyring()

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

    def keys(self) -> list[DataKey]:
        return [self.active, *self.others.values()]


@dataclass
class KeyEntry:
    number: int
    status: str
    kind: str
    created: str
    siv: bytes
    stream: bytes  # the streaming key (tink) or the legacy AES-GCM key

    @property
    def key_id(self) -> str:
        return key_id_text(self.number)

    def data_key(self) -> DataKey:
        if self.kind == LEGACY:
            return legacy.legacy_key(self.key_id, self.siv, self.stream)
        return DataKey.from_material(self.number, self.siv, self.stream)

    def as_json(self) -> dict:
        return {"id": self.key_id, "status": self.status, "kind": self.kind, "created": self.created,
                "siv_key": _b64(self.siv), "stream_key": _b64(self.stream)}

    @classmethod
    def from_json(cls, data: dict) -> KeyEntry:
        return cls(int(data["id"], 16), data["status"], data["kind"], data["created"],
                   base64.b64decode(data["siv_key"]), base64.b64decode(data["stream_key"]))


@dataclass
class Keyset:
    primary: int
    keys: list[KeyEntry] = field(default_factory=list)
    # Every sealed file is bound to its name (crypto.file_binding): set by a keyset created for an
    # empty data dir, or by the rotation that re-sealed older files. Then nothing unbound is opened.
    files_bound: bool = False

    @classmethod
    def new(cls) -> Keyset:
        keyset = cls(primary=0)
        keyset.add_key()
        return keyset

    @classmethod
    def initial(cls, master: bytes) -> Keyset:
        """A demo deployment's keyset: its first key is derived (HKDF-SHA256) from the master key, so
        tooling holding only the master key (tests, ``Keyring.from_secrets``) reads it. Outside demo
        mode the first key is random (``Keyset.new``): the master key alone decrypts nothing, not
        even tokens kept in Dagster's run history."""
        def derive(purpose: bytes, length: int) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                        info=b"sales_platform initial key " + purpose).derive(master)

        number = int.from_bytes(derive(b"id", 4), "big") or 1
        entry = KeyEntry(number, ENABLED, TINK, _now(), derive(b"siv", SIV_KEY_SIZE),
                         derive(b"stream", STREAM_KEY_SIZE))
        return cls(primary=number, keys=[entry])

    def entry(self, key_id: str) -> KeyEntry:
        for entry in self.keys:
            if entry.key_id == key_id:
                return entry
        raise CryptoError(f"no key with id {key_id!r} in the keyset")

    def add_key(self, make_primary: bool = True) -> KeyEntry:
        taken = {e.number for e in self.keys}
        number = 0
        while number == 0 or number in taken:
            number = secrets.randbits(32)
        entry = KeyEntry(number, ENABLED, TINK, _now(), os.urandom(SIV_KEY_SIZE), os.urandom(STREAM_KEY_SIZE))
        self.keys.append(entry)
        if make_primary:
            self.primary = number
        return entry

    def import_legacy(self, secret: bytes) -> KeyEntry:
        """The previous format's key for a master secret, decrypt-only (migration)."""
        key_id, siv, gcm = legacy.legacy_material(secret)
        if any(e.key_id == key_id for e in self.keys):
            return self.entry(key_id)
        entry = KeyEntry(int(key_id, 16), ENABLED, LEGACY, _now(), siv, gcm)
        self.keys.append(entry)
        return entry

    @property
    def retiring(self) -> list[KeyEntry]:
        """Enabled keys other than the primary: a rotation to the primary is under way."""
        return [e for e in self.keys if e.status == ENABLED and e.number != self.primary]

    def retire(self, key_id: str) -> None:
        entry = self.entry(key_id)
        if entry.number == self.primary:
            raise CryptoError(f"key {key_id} is the primary key: it cannot be retired")
        entry.status = DISABLED

    def keyring(self) -> Keyring:
        primary = self.entry(key_id_text(self.primary))
        return Keyring(active=primary.data_key(),
                       others={e.key_id: e.data_key() for e in self.retiring})

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "primary": key_id_text(self.primary),
                           "keys": [e.as_json() for e in self.keys], "files_bound": self.files_bound},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Keyset:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise CryptoError(f"not a keyset document ({FORMAT!r} expected)")
        return cls(int(data["primary"], 16), [KeyEntry.from_json(k) for k in data["keys"]],
                   files_bound=bool(data.get("files_bound", False)))

    def tink_json(self, kind: str) -> str:
        """The Tink keys as a Tink JSON keyset: ``daead`` (tokens) or ``streaming`` (sealed files).
        It holds secret key material: for tests and interoperability, never to be written to disk."""
        if kind not in ("daead", "streaming"):
            raise ValueError("kind is 'daead' or 'streaming'")
        keys = []
        for entry in self.keys:
            if entry.kind != TINK:
                continue
            value = _SIV_PROTO_HEAD + entry.siv if kind == "daead" else _STREAM_PROTO_HEAD + entry.stream
            keys.append({"keyData": {"typeUrl": SIV_TYPE_URL if kind == "daead" else STREAM_TYPE_URL,
                                     "value": _b64(value), "keyMaterialType": "SYMMETRIC"},
                         "status": entry.status.upper(), "keyId": entry.number,
                         "outputPrefixType": "TINK" if kind == "daead" else "RAW"})
        return json.dumps({"primaryKeyId": self.primary, "key": keys})


# --- wrapped under the master key ----------------------------------------------------------------

def _kek(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"sales_platform keyset wrapping key").derive(master)


def wrap(keyset: Keyset, master: bytes) -> bytes:
    wrapped = aes_key_wrap_with_padding(_kek(master), keyset.to_json().encode("utf-8"))
    return json.dumps({"format": FORMAT, "wrapping": "AES-KWP (RFC 5649), HKDF-SHA256(master key)",
                       "wrapped": _b64(wrapped)}, indent=1).encode("utf-8")


def unwrap(data: bytes, master: bytes, where: str = "the keyset") -> Keyset:
    try:
        envelope = json.loads(data)
        wrapped = base64.b64decode(envelope["wrapped"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CryptoError(f"{where} is not a wrapped keyset file") from exc
    try:
        plain = aes_key_unwrap_with_padding(_kek(master), wrapped)
    except InvalidUnwrap:
        raise CryptoError(f"the master key ({settings.ENCRYPTION_KEY} or {settings.ENCRYPTION_KEY_FILE}) "
                          f"does not decrypt {where}: wrong master key, or the file is damaged") from None
    return Keyset.from_json(plain.decode("utf-8"))


def load_keyset(path: Path, master: bytes) -> Keyset:
    return unwrap(path.read_bytes(), master, f"the keyset {path}")


def save_keyset(path: Path, keyset: Keyset, master: bytes) -> None:
    """Atomically, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(wrap(keyset, master))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create(path: Path, master: bytes, legacy_secrets: tuple[bytes, ...] = (),
                   files_bound: bool = False, derive_first: bool = False) -> Keyset:
    """The keyset at ``path``; created with one new key when absent (random; derived from the master
    key with ``derive_first``, demo mode only), holding the previous format's keys for
    ``legacy_secrets`` (decrypt only) so ``rotate-keys`` can migrate older data, and
    ``files_bound`` (no sealed file predates it). Creation is race-free: the new file is linked
    into place only if no other process was first."""
    if path.exists():
        return load_keyset(path, master)
    keyset = Keyset.initial(master) if derive_first else Keyset.new()
    keyset.files_bound = files_bound
    for secret in legacy_secrets:
        keyset.import_legacy(secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    save_keyset(tmp, keyset, master)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_keyset(path, master)
    finally:
        tmp.unlink(missing_ok=True)
    return keyset


def keyring_for(data_dir: Path, master_key: str, legacy_keys: tuple[str, ...] = ()) -> Keyring:
    """The keyring of the keyset under ``data_dir`` (default location) for a base64 master key."""
    master = parse_master_key(master_key)
    legacy_secrets = (master, *(parse_master_key(k) for k in legacy_keys))
    return load_or_create(Path(data_dir) / KEYSET_FILE, master, legacy_secrets).keyring()


def derived_entries(keyset: Keyset, master: bytes) -> list[KeyEntry]:
    """Keys of ``keyset`` derived from ``master`` (a demo keyset's, or one made before first keys were
    random): whatever is under them, also in Dagster's run history, the master key alone decrypts."""
    derived = Keyset.initial(master).keys[0]
    return [e for e in keyset.keys if e.kind == TINK and e.siv == derived.siv]


# --- the demo key (demo mode only) ---------------------------------------------------------------

def _demo_key_problem(path: Path, info: os.stat_result) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file (a link or something else put there): remove it"
    if info.st_uid != os.geteuid():
        return (f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): another "
                "account made it and knows the key; remove it (a new demo key is made)")
    if info.st_mode & 0o077:
        return (f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: other accounts may have read the key; "
                "remove it (a new demo key is made), or chmod 600 it if nobody else can have read it")
    return None


def demo_key_problem(path: Path) -> str | None:
    """Why the demo key file cannot be trusted (not ours, readable by others, a link), or None."""
    try:
        return _demo_key_problem(path, os.lstat(path))
    except FileNotFoundError:
        return None


def read_demo_key(path: Path, create: bool = True) -> str:
    """The demo key at ``path`` (created 0600 when absent with ``create``); refused when another account
    owns it, could read it, or it is not a plain file (settings.SettingError naming the file and fix)."""
    if create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_key())
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no demo key yet (PlatformResource.prepare creates it)") from None
    except OSError:  # ELOOP: a symbolic link
        raise settings.SettingError(f"{settings.ENCRYPTION_KEY} is not set and the demo key "
                                    f"{path} is a symbolic link: remove it") from None
    with os.fdopen(fd) as handle:
        problem = _demo_key_problem(path, os.fstat(handle.fileno()))  # the file actually opened
        if problem:
            raise settings.SettingError(f"{settings.ENCRYPTION_KEY} is not set and the demo key {problem}")
        return handle.read().strip()
