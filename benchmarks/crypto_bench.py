"""Tokenization (µs per id) and sealing (MB/s): the platform's cryptography-based formats vs Tink.

    .venv/bin/python benchmarks/crypto_bench.py
"""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pandas as pd
import tink
from tink import daead, secret_key_access, streaming_aead

from sales_platform.core.crypto import Tokenizer, b64e, seal_bytes
from sales_platform.core.keyset import Keyset


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()  # CPU time: the machine is shared, wall time is noisy
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    daead.register()
    streaming_aead.register()
    keyset = Keyset.new()
    tokenizer = Tokenizer(keyset.keyring())
    ids = pd.Series([f"C{i:07d}" for i in range(200_000)], name="customer_id")
    n = len(ids)
    t = best(lambda: tokenizer.encrypt_series(ids))
    handle = tink.json_proto_keyset_format.parse(keyset.tink_json("daead"), secret_key_access.TOKEN)
    tink_daead = handle.primitive(daead.DeterministicAead)
    values = [v.encode() for v in ids]
    siv, ad = keyset.keyring().active.siv, [b"customer_id"]
    t_siv = best(lambda: [siv.encrypt(v, ad) for v in values])
    t_tink = best(lambda: [tink_daead.encrypt_deterministically(v, b"customer_id") for v in values])

    def tink_tokens() -> pd.Series:  # Tink doing the platform's whole job: distinct values, text tokens
        codes, uniques = pd.factorize(ids)
        tokens = np.array([b64e(tink_daead.encrypt_deterministically(v.encode(), b"customer_id"))
                           for v in uniques], dtype=object)
        return pd.Series(tokens[codes], index=ids.index)

    t_tink_series = best(tink_tokens)
    print(f"tokenize ({n} distinct ids, CPU µs/id): platform encrypt_series {t / n * 1e6:.2f}, "
          f"Tink with the same dedup + base64 {t_tink_series / n * 1e6:.2f}; bare AES-SIV calls: "
          f"cryptography {t_siv / n * 1e6:.2f}, Tink {t_tink / n * 1e6:.2f}")
    data = os.urandom(50 << 20)
    s = best(lambda: seal_bytes(keyset.keyring().active, data))
    stream = tink.json_proto_keyset_format.parse(keyset.tink_json("streaming"), secret_key_access.TOKEN) \
        .primitive(streaming_aead.StreamingAead)

    def tink_seal() -> None:
        class Sink(io.BytesIO):
            def close(self) -> None:
                pass
        with stream.new_encrypting_stream(Sink(), b"sales_platform sealed file") as out:
            out.write(data)

    s_tink = best(tink_seal)
    print(f"seal 50 MB: platform {50 / s:.0f} MB/s ({s:.3f} s), Tink {50 / s_tink:.0f} MB/s ({s_tink:.3f} s)")


if __name__ == "__main__":
    main()
