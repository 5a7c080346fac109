"""The platform's token and sealed-file formats against Tink (the reference implementation).

Tink is the oracle: it decrypts what the platform writes and the platform decrypts what Tink writes,
with the same key exported from the platform's keyset as a Tink JSON keyset."""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest
import tink
from tink import daead, secret_key_access, streaming_aead

from sales_platform.core.crypto import (
    SEAL_AD,
    SEGMENT_SIZE,
    CryptoError,
    Tokenizer,
    b64d,
    b64e,
    generate_key,
    open_sealed_bytes,
    parse_master_key,
    seal_bytes,
)
from sales_platform.core.keyset import Keyset, load_keyset, load_or_create, save_keyset, unwrap, wrap

daead.register()
streaming_aead.register()


def tink_primitive(keyset: Keyset, kind: str):
    handle = tink.json_proto_keyset_format.parse(keyset.tink_json(kind), secret_key_access.TOKEN)
    return handle.primitive(daead.DeterministicAead if kind == "daead" else streaming_aead.StreamingAead)


def tink_seal(primitive, data: bytes, ad: bytes = SEAL_AD) -> bytes:
    out = io.BytesIO()
    with primitive.new_encrypting_stream(_Unclosed(out), ad) as stream:
        stream.write(data)
    return out.getvalue()


def tink_open(primitive, data: bytes, ad: bytes = SEAL_AD) -> bytes:
    with primitive.new_decrypting_stream(io.BytesIO(data), ad) as stream:
        return stream.read()


class _Unclosed(io.BytesIO):
    """Tink closes the stream it writes to; keep the buffer readable."""

    def __init__(self, target: io.BytesIO) -> None:
        super().__init__()
        self.target = target

    def write(self, data) -> int:
        return self.target.write(data)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def keyset() -> Keyset:
    return Keyset.new()


IDS = ["C0001234", "P-42", "ß-ünïcødé", "x" * 300]


def test_tink_decrypts_platform_tokens_with_the_column_as_associated_data(keyset):
    tokenizer, tink_daead = Tokenizer(keyset.keyring()), tink_primitive(keyset, "daead")
    for value in IDS:
        token = tokenizer.encrypt(value, "customer_id")
        raw = b64d(token)
        assert raw[0] == 1 and raw[1:5] == keyset.primary.to_bytes(4, "big")  # Tink's TINK prefix
        assert tink_daead.decrypt_deterministically(raw, b"customer_id").decode() == value
        with pytest.raises(tink.TinkError):
            tink_daead.decrypt_deterministically(raw, b"product_id")
        # deterministic: Tink's ciphertext is byte-identical
        assert tink_daead.encrypt_deterministically(value.encode(), b"customer_id") == raw


def test_platform_decrypts_tink_tokens_and_joins_by_column(keyset):
    tokenizer, tink_daead = Tokenizer(keyset.keyring()), tink_primitive(keyset, "daead")
    for value in IDS:
        token = b64e(tink_daead.encrypt_deterministically(value.encode(), b"product_id"))
        assert tokenizer.decrypt(token, "product_id") == value
        assert tokenizer.decrypt(token, "product_token") == value  # dim_products' column: same AD
        with pytest.raises(CryptoError, match="does not decrypt for column customer_id"):
            tokenizer.decrypt(token, "customer_id")
    series = pd.Series(["P1", None, "P2", "P1"], name="product_id")
    tokens = tokenizer.encrypt_series(series)
    assert tokens[0] == tokens[3] != tokens[2] and tokens[1] is None
    assert tokens[0] == b64e(tink_daead.encrypt_deterministically(b"P1", b"product_id"))
    assert tokenizer.encrypt_series(series, "customer_id")[0] != tokens[0]


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE - 56, SEGMENT_SIZE - 55, 2 * SEGMENT_SIZE + 12345])
def test_tink_and_platform_open_each_others_streams(keyset, size):
    data = os.urandom(size)
    tink_stream = tink_primitive(keyset, "streaming")
    sealed = seal_bytes(keyset.keyring().active, data)
    assert tink_open(tink_stream, sealed) == data
    from_tink = tink_seal(tink_stream, data)
    assert len(from_tink) == len(sealed)  # same segmentation
    assert open_sealed_bytes(keyset.keyring(), from_tink) == data


def test_streams_detect_truncation_reordering_wrong_key_and_associated_data(keyset):
    data = os.urandom(2 * SEGMENT_SIZE + 100)
    sealed = seal_bytes(keyset.keyring().active, data)
    first_end = SEGMENT_SIZE  # header + first segment
    second = [sealed[first_end + i * SEGMENT_SIZE:first_end + (i + 1) * SEGMENT_SIZE] for i in (0, 1)]
    cases = {
        "truncated at a segment boundary": sealed[:first_end],
        "truncated inside a segment": sealed[:-10],
        "header only": sealed[:40],
        "segments 1 and 2 swapped": sealed[:first_end] + second[1] + second[0]
        + sealed[first_end + 2 * SEGMENT_SIZE:],
        "a bit flipped": sealed[:500] + bytes([sealed[500] ^ 1]) + sealed[501:],
    }
    ring = keyset.keyring()
    for name, damaged in cases.items():
        with pytest.raises(CryptoError):
            open_sealed_bytes(ring, damaged)
        with pytest.raises(tink.TinkError):
            tink_open(tink_primitive(keyset, "streaming"), damaged)
        assert name
    with pytest.raises(CryptoError, match="any key in the keyring"):
        open_sealed_bytes(Keyset.new().keyring(), sealed)
    with pytest.raises(CryptoError, match="associated data"):
        open_sealed_bytes(ring, sealed, b"another purpose")
    assert open_sealed_bytes(ring, seal_bytes(ring.active, b"x", b"other"), b"other") == b"x"


def test_a_keyset_with_an_older_key_opens_both_and_tink_agrees(keyset):
    old = Keyset.new()
    old_sealed = seal_bytes(old.keyring().active, b"old")
    old_token = Tokenizer(old.keyring()).encrypt("C1", "customer_id")
    old.add_key()  # rotation: a new primary, the old key still decrypts
    ring = old.keyring()
    assert open_sealed_bytes(ring, old_sealed) == b"old"
    assert Tokenizer(ring).decrypt(old_token, "customer_id") == "C1"
    assert tink_open(tink_primitive(old, "streaming"), old_sealed) == b"old"
    assert tink_primitive(old, "daead").decrypt_deterministically(b64d(old_token), b"customer_id") == b"C1"


def test_keyset_wraps_under_the_master_key_and_a_wrong_key_is_named(tmp_path, keyset):
    master, wrong = parse_master_key(generate_key()), parse_master_key(generate_key())
    data = wrap(keyset, master)
    assert keyset.keys[0].siv not in data and b"siv_key" not in data  # wrapped, not readable
    assert unwrap(data, master).to_json() == keyset.to_json()
    with pytest.raises(CryptoError, match="SALES_PLATFORM_ENCRYPTION_KEY.*does not decrypt"):
        unwrap(data, wrong)
    path = tmp_path / "keys" / "keyset.json"
    save_keyset(path, keyset, master)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_keyset(path, master).primary == keyset.primary
    assert load_or_create(path, master).primary == keyset.primary  # existing file kept
    with pytest.raises(CryptoError, match="SALES_PLATFORM_ENCRYPTION_KEY"):
        load_or_create(path, wrong)
