"""Data written in the previous format (``<key_id>~<b64>`` tokens, SPSEAL1 files) is rotated into the
Tink formats with nothing lost. The previous writer lives only here (the platform no longer has one)."""

from __future__ import annotations

import base64
import io
import os
import struct
from datetime import date, datetime

from sqlalchemy import insert, select

from sales_platform.core import legacy
from sales_platform.core.crypto import (
    Keyring,
    Tokenizer,
    generate_key,
    key_id_of_token,
    open_platform_bytes,
    parse_master_key,
)
from sales_platform.core.rotation import rotate_keys, sealed_key_id
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import sales


def legacy_token(secret: bytes, value: str) -> str:
    key_id, siv, _ = legacy.legacy_material(secret)
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    body = AESSIV(siv).encrypt(value.encode(), None)
    return key_id + "~" + base64.urlsafe_b64encode(body).rstrip(b"=").decode()


def legacy_seal(secret: bytes, data: bytes, segment: int = 1 << 20) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_id, _, gcm_key = legacy.legacy_material(secret)
    gcm, prefix = AESGCM(gcm_key), os.urandom(7)
    out = io.BytesIO()
    out.write(legacy.SEAL_MAGIC + key_id.encode() + prefix)
    pieces = [data[i:i + segment] for i in range(0, len(data), segment)] or [b""]
    for n, piece in enumerate(pieces):
        nonce = prefix + struct.pack(">I", n) + (b"\x01" if n == len(pieces) - 1 else b"\x00")
        sealed = gcm.encrypt(nonce, piece, nonce)
        out.write(struct.pack(">I", len(sealed)) + sealed)
    return out.getvalue()


def test_previous_format_is_migrated_row_by_row(tmp_path):
    old_key, new_master = generate_key(), generate_key()
    secret = parse_master_key(old_key)
    plain = {f"T{i:03d}": (f"C{i % 7:04d}", f"P{i % 3:03d}") for i in range(50)}
    engine = cached_engine(f"sqlite:///{tmp_path / 'w.db'}")
    base = {"quantity": 1, "sale_date": date(2024, 3, 1), "sale_ts": datetime(2024, 3, 1, 9),
            "source_file": "a.csv", "loaded_at": datetime(2024, 3, 2)}
    with engine.begin() as conn:
        conn.execute(insert(sales), [{**base, "transaction_id": t, "customer_id": legacy_token(secret, c),
                                      "product_id": legacy_token(secret, p)} for t, (c, p) in plain.items()])
    areas = DataAreas(tmp_path / "data")
    areas.ensure()
    content = os.urandom((1 << 20) * 2 + 5)
    archived = areas.archive / "drop.csv.sealed"
    archived.write_bytes(legacy_seal(secret, content))
    legacy_id = legacy.legacy_key_id(secret)

    ring = Keyring.from_secrets(new_master, [old_key])  # the new key + the previous format's key
    assert sealed_key_id(archived, ring) == legacy_id
    report = rotate_keys(engine, ring, areas, batch_size=17)

    only_new = Keyring(active=ring.active)
    tokenizer = Tokenizer(only_new)
    with engine.connect() as conn:
        rows = {r.transaction_id: (r.customer_id, r.product_id) for r in conn.execute(select(sales))}
    assert {t: (tokenizer.decrypt(c, "customer_id"), tokenizer.decrypt(p, "product_id"))
            for t, (c, p) in rows.items()} == plain
    assert {key_id_of_token(v) for pair in rows.values() for v in pair} == {ring.active.key_id}
    assert open_platform_bytes(only_new, archived.read_bytes(), "archive/drop.csv.sealed") == content
    assert not archived.read_bytes().startswith(legacy.SEAL_MAGIC)
    assert report.values["sales.customer_id"] == 50 and report.sealed_files["archive"] == 1
