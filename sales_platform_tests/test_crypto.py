import io

import pandas as pd
import pytest

from sales_platform.core.crypto import (
    SEGMENT_SIZE,
    CryptoError,
    Keyring,
    Tokenizer,
    b64d,
    b64e,
    generate_key,
    is_token,
    key_id_of_token,
    open_sealed,
    seal_stream,
    token_prefixes,
)
from sales_platform.core.keyset import load_or_create


def test_tokens_are_deterministic_per_column_and_round_trip(keyring):
    tokenizer = Tokenizer(keyring)
    token = tokenizer.encrypt("C0001234", "customer_id")
    assert token == tokenizer.encrypt("C0001234", "customer_id")
    assert token != tokenizer.encrypt("C0001235", "customer_id")
    assert token != tokenizer.encrypt("C0001234", "product_id")  # the column is associated data
    assert "C0001234" not in token and is_token(token)
    assert key_id_of_token(token) == keyring.active.key_id
    assert token.startswith(token_prefixes(keyring.active.key_id))
    assert tokenizer.decrypt(token, "customer_id") == tokenizer.decrypt(token) == "C0001234"
    with pytest.raises(CryptoError, match="for column product_id"):
        tokenizer.decrypt(token, "product_id")


def test_series_encryption_keeps_missing_values_and_equalities(keyring):
    tokenizer = Tokenizer(keyring)
    values = pd.Series(["A", None, "B", "A"], name="customer_id")
    tokens = tokenizer.encrypt_series(values)
    assert tokens[0] == tokens[3] != tokens[2] and tokens[1] is None
    assert tokenizer.decrypt_series(tokens.dropna(), "customer_id").tolist() == ["A", "B", "A"]
    with pytest.raises(ValueError, match="column name"):
        tokenizer.encrypt_series(pd.Series(["A"]))


def test_other_key_cannot_decrypt_and_tampering_is_detected(keyring):
    token = Tokenizer(keyring).encrypt("secret-id", "customer_id")
    with pytest.raises(CryptoError):
        Tokenizer(Keyring.from_secrets(generate_key())).decrypt(token, "customer_id")
    raw = b64d(token)
    flipped = b64e(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(CryptoError, match="does not decrypt"):
        Tokenizer(keyring).decrypt(flipped, "customer_id")


def test_rotation_keeps_old_tokens_readable(key):
    old = Tokenizer(Keyring.from_secrets(key))
    token = old.encrypt("C42", "customer_id")
    new_key = generate_key()
    during = Tokenizer(Keyring.from_secrets(new_key, [key]))
    assert during.decrypt(token, "customer_id") == "C42"
    rotated = during.reencrypt(token, "customer_id")
    assert key_id_of_token(rotated) == during.keyring.active.key_id
    assert during.decrypt(rotated, "customer_id") == "C42"
    assert during.reencrypt(rotated, "customer_id") == rotated


def test_a_demo_keyset_starts_with_the_key_from_secrets_a_production_one_does_not(tmp_path, key):
    """In demo mode a new keyset and Keyring.from_secrets agree (tools holding the master key); in
    production the first key is random: the master key alone decrypts nothing."""
    from sales_platform.core.crypto import parse_master_key

    production = load_or_create(tmp_path / "prod.json", parse_master_key(key)).keyring()
    assert production.active.key_id != Keyring.from_secrets(key).active.key_id
    with pytest.raises(CryptoError):
        Tokenizer(Keyring.from_secrets(key)).decrypt(Tokenizer(production).encrypt("C1", "customer_id"))
    ring = load_or_create(tmp_path / "keyset.json", parse_master_key(key), derive_first=True).keyring()
    assert ring.active.key_id == Keyring.from_secrets(key).active.key_id
    token = Tokenizer(ring).encrypt("C1", "customer_id")
    assert Tokenizer(Keyring.from_secrets(key)).decrypt(token, "customer_id") == "C1"


@pytest.mark.parametrize("size", [0, 10, SEGMENT_SIZE, 3 * SEGMENT_SIZE + 7])
def test_sealed_stream_round_trip(keyring, size):
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    out = io.BytesIO()
    seal_stream(keyring.active, [data[i:i + 70_000] for i in range(0, len(data), 70_000)], out)
    assert b"".join(open_sealed(keyring, io.BytesIO(out.getvalue()))) == data


def test_sealed_stream_detects_truncation(keyring):
    out = io.BytesIO()
    seal_stream(keyring.active, [b"a" * (SEGMENT_SIZE + 10)], out)
    sealed = out.getvalue()
    with pytest.raises(CryptoError):
        b"".join(open_sealed(keyring, io.BytesIO(sealed[:SEGMENT_SIZE])))
