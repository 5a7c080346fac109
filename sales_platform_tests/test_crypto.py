import io

import pandas as pd
import pytest

from sales_platform.core.crypto import (
    SEGMENT_SIZE,
    CryptoError,
    Keyring,
    Tokenizer,
    generate_key,
    is_token,
    open_sealed,
    seal_stream,
)


def test_tokens_are_deterministic_and_round_trip(keyring):
    tokenizer = Tokenizer(keyring)
    token = tokenizer.encrypt("C0001234")
    assert token == tokenizer.encrypt("C0001234")
    assert token != tokenizer.encrypt("C0001235")
    assert "C0001234" not in token and is_token(token)
    assert token.startswith(keyring.active.key_id + "~")
    assert tokenizer.decrypt(token) == "C0001234"


def test_series_encryption_keeps_missing_values_and_equalities(keyring):
    tokenizer = Tokenizer(keyring)
    values = pd.Series(["A", "B", None, "A"])
    tokens = tokenizer.encrypt_series(values)
    assert tokens[0] == tokens[3] and tokens[0] != tokens[1] and tokens[2] is None
    assert tokenizer.decrypt_series(tokens.dropna()).tolist() == ["A", "B", "A"]


def test_other_key_cannot_decrypt_and_tampering_is_detected(keyring):
    token = Tokenizer(keyring).encrypt("secret-id")
    with pytest.raises(CryptoError):
        Tokenizer(Keyring.from_secrets(generate_key())).decrypt(token)
    key_id, body = token.split("~")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(CryptoError):
        Tokenizer(keyring).decrypt(f"{key_id}~{flipped}")


def test_rotation_old_tokens_decrypt_and_reencrypt_to_new_key(key):
    old = Tokenizer(Keyring.from_secrets(key))
    token = old.encrypt("C42")
    new_key = generate_key()
    during = Tokenizer(Keyring.from_secrets(new_key, [key]))
    assert during.decrypt(token) == "C42"
    rotated = during.reencrypt(token)
    assert rotated.startswith(during.keyring.active.key_id) and during.decrypt(rotated) == "C42"
    assert during.reencrypt(rotated) == rotated


@pytest.mark.parametrize("size", [0, 10, SEGMENT_SIZE, SEGMENT_SIZE * 2 + 7])
def test_sealed_stream_round_trip(keyring, size):
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    out = io.BytesIO()
    seal_stream(keyring.active, [data[i:i + 70_000] for i in range(0, len(data), 70_000)], out)
    assert b"".join(open_sealed(keyring, io.BytesIO(out.getvalue()))) == data


def test_sealed_stream_detects_truncation(keyring):
    out = io.BytesIO()
    seal_stream(keyring.active, [b"a" * (SEGMENT_SIZE + 10)], out)
    sealed = out.getvalue()
    first_segment_end = len(sealed) - (10 + 16 + 4)  # drop the final segment entirely
    with pytest.raises(CryptoError):
        b"".join(open_sealed(keyring, io.BytesIO(sealed[:first_segment_end])))
