"""`sales-platform rotate-keys` killed with SIGKILL, twice, then rerun: nothing lost, nothing encrypted twice.

The command runs in a child process (the real CLI, its own engine and keyset file). A small wrapper
in the child pauses it at a chosen point, inside a batch's transaction or halfway through writing a
re-sealed file, and writes a marker; the test then kills it with SIGKILL, so nothing of the platform's
own cleanup runs. The end state is judged with an independent oracle: the plaintext the test generated
and, as the decryptor, Tink holding only the keys the final keyset leaves enabled.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tink
from sqlalchemy import insert, select
from tink import daead, secret_key_access, streaming_aead

from sales_platform.core.crypto import Tokenizer, b64d, parse_master_key, seal_bytes, token_prefixes
from sales_platform.core.keyset import DISABLED, KEYSET_FILE, load_keyset, load_or_create
from sales_platform.core.warehouse.engine import cached_engine, dispose_all
from sales_platform.core.warehouse.tables import dim_products, sales, sales_rejects
from sales_platform.rotation_cli import cmd_key_status
from sales_platform_tests.eventually import eventually

daead.register()
streaming_aead.register()

ROWS, CUSTOMERS, PRODUCTS, BATCH = 1200, 300, 20, 50
SEAL_AD = b"sales_platform sealed file"  # the documented associated data of sealed files (before the name)

# Runs the real CLI; PAUSE_AT=token:N stops inside the batch that re-encrypts the N-th distinct token,
# PAUSE_AT=seal:N after the header and first segment of the N-th re-sealed file. Then it waits to be killed.
CHILD = r"""
import os, sys, time
from pathlib import Path
from sales_platform.core import rotation

where, nth = os.environ["PAUSE_AT"].split(":")
nth, calls = int(nth), [0]

def pause():
    Path(os.environ["PAUSE_MARKER"]).write_text(str(os.getpid()))
    time.sleep(600)

if where == "token":
    new = rotation.TokenCache.new
    def paused_new(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            pause()
        return new(self, *args, **kwargs)
    rotation.TokenCache.new = paused_new
else:
    seal = rotation.files.seal_stream
    class Pausing:
        def __init__(self, out):
            self.out, self.writes = out, 0
        def write(self, data):
            self.out.write(data)
            self.writes += 1
            if self.writes == 2:
                self.out.flush()
                pause()
    def paused_seal(key, chunks, out, *args, **kwargs):
        calls[0] += 1
        return seal(key, chunks, Pausing(out) if calls[0] == nth else out, *args, **kwargs)
    rotation.files.seal_stream = paused_seal

from sales_platform.cli import main
sys.exit(main(sys.argv[1:]))
"""


def customer(i: int) -> str:
    return f"C{i % CUSTOMERS:07d}"


def product(i: int) -> str:
    return f"P{i % PRODUCTS:05d}"


def build_warehouse(url: str, data_dir: Path, master: str) -> dict[str, bytes]:
    """Rows and files under the deployment's first key; returns the sealed files' plaintext by path."""
    keyring = load_or_create(data_dir / KEYSET_FILE, parse_master_key(master),
                             (parse_master_key(master),)).keyring()
    tok = Tokenizer(keyring)
    base = {"quantity": 1, "sale_date": date(2024, 3, 1), "sale_ts": datetime(2024, 3, 1, 9),
            "source_file": "day.csv", "loaded_at": datetime(2024, 3, 2)}
    engine = cached_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(sales), [{**base, "transaction_id": f"T{i:05d}",
                                      "customer_id": tok.encrypt(customer(i), "customer_id"),
                                      "product_id": tok.encrypt(product(i), "product_id")}
                                     for i in range(ROWS)])
        conn.execute(insert(sales_rejects), [{
            "stage": "cleaning", "source_file": "day.csv", "reason": "quantity_not_positive",
            "rejected_at": datetime(2024, 3, 2), "customer_id": tok.encrypt(customer(i), "customer_id"),
            "product_id": tok.encrypt(product(i), "product_id"),
            "raw_text": tok.encrypt(f"R{i},{customer(i)}", "raw_text")} for i in range(30)])
        conn.execute(insert(dim_products), [{
            "product_token": tok.encrypt(product(i), "product_id"), "name": f"name {i}", "category": "c",
            "unit_price": Decimal("1.50"), "updated_at": datetime(2024, 3, 1)} for i in range(PRODUCTS)])
    dispose_all()  # the child owns the database from here
    staged = data_dir / "staging" / "encrypted" / "2024-03-01"
    staged.mkdir(parents=True)
    pq.write_table(pa.table({"customer_id": [tok.encrypt(customer(i), "customer_id") for i in range(40)]}),
                   staged / "fragment.parquet")
    plain = {"staging/raw/2024-03-01/fragment.sealed": b"small fragment\n" * 10,
             "archive/a_big.csv.sealed": os.urandom((1 << 20) * 2 + 123),  # three segments
             "archive/b_small.csv.sealed": b"transaction_id,customer_id\nT1,C1\n"}
    for relative, content in plain.items():
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(seal_bytes(keyring.active, content))
    return plain


def run_cli(env: dict[str, str], tmp_path: Path, pause_at: str | None) -> subprocess.CompletedProcess | None:
    """Runs rotate-keys; with ``pause_at`` waits for the pause, SIGKILLs the child and returns None."""
    marker = tmp_path / f"paused-{pause_at}".replace(":", "-")
    child_env = {**env, "PAUSE_AT": pause_at or "none:0", "PAUSE_MARKER": str(marker)}
    args = [sys.executable, "-c", CHILD, "rotate-keys", "--batch-size", str(BATCH)]
    if pause_at is None:
        return subprocess.run(args, env=child_env, capture_output=True, text=True, timeout=120)
    proc = subprocess.Popen(args, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def exited() -> None:
            if proc.poll() is not None:
                raise AssertionError(f"rotate-keys ended before the pause: {proc.stderr.read()[-2000:]}")

        eventually(f"rotate-keys paused at {pause_at}", marker.exists, timeout=60, interval=0.05,
                   check=exited)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None


def under(values: list[str], key_id: str) -> int:
    return sum(v.startswith(token_prefixes(key_id)) for v in values)


def tink_open(keyset_json: str, data: bytes, ad: bytes) -> bytes:
    primitive = tink.json_proto_keyset_format.parse(keyset_json, secret_key_access.TOKEN) \
        .primitive(streaming_aead.StreamingAead)
    with primitive.new_decrypting_stream(io.BytesIO(data), ad) as stream:
        return stream.read()


@pytest.mark.slow
def test_rotate_keys_killed_mid_batch_and_mid_file_then_rerun_loses_nothing(backend, data_dir, key, tmp_path,
                                                                             monkeypatch):
    plain_files = build_warehouse(backend.url, data_dir, key)
    master = parse_master_key(key)
    old = f"{load_keyset(data_dir / KEYSET_FILE, master).primary:08x}"
    env = {**os.environ, "SALES_PLATFORM_DATA_DIR": str(data_dir), "SALES_PLATFORM_DB_URL": backend.url,
           "SALES_PLATFORM_ENCRYPTION_KEY": key}
    env.pop("SALES_PLATFORM_ENCRYPTION_KEY_FILE", None)
    engine = cached_engine(backend.url)

    def sales_customers() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(select(sales.c.customer_id)).scalars())

    # 1. Killed inside a transaction: the 4th batch of sales has been read and partly re-encrypted.
    per_batch = 2 * BATCH  # tokens a sales batch looks up (customer and product of each row)
    run_cli(env, tmp_path, f"token:{3 * per_batch + 10}")
    keyset = load_keyset(data_dir / KEYSET_FILE, master)
    new = f"{keyset.primary:08x}"
    assert new != old and keyset.entry(old).status != DISABLED  # the new primary was saved before the work
    rotated = under(sales_customers(), new)
    dispose_all()
    # Exactly the three batches committed before it; the killed one rolled back.
    assert rotated == 3 * BATCH, rotated
    assert under(sales_customers(), old) == ROWS - rotated
    dispose_all()

    # 2. Killed while writing the second re-sealed file (after its header and first segment).
    run_cli(env, tmp_path, "seal:2")
    assert under(sales_customers(), new) == ROWS  # the tables were finished before the files
    dispose_all()
    assert len(list(data_dir.rglob(".*.rotating"))) == 1  # the half-written file, never renamed into place

    # 3. The rerun resumes the same rotation and finishes it.
    done = run_cli(env, tmp_path, None)
    assert done is not None and done.returncode == 0, done.stderr[-3000:]
    assert f"resuming the rotation to key {new}" in done.stdout
    final = load_keyset(data_dir / KEYSET_FILE, master)
    assert f"{final.primary:08x}" == new and final.entry(old).status == DISABLED
    assert not list(data_dir.rglob(".*.rotating"))  # the killed run's temp file was cleared

    # The oracle: Tink, with only the keys the final keyset leaves enabled, gives back the generated input.
    siv = tink.json_proto_keyset_format.parse(final.tink_json("daead"), secret_key_access.TOKEN) \
        .primitive(daead.DeterministicAead)

    def plain(token: str, column: str) -> str:
        return siv.decrypt_deterministically(b64d(token), column.encode()).decode()

    with engine.connect() as conn:
        got_sales = {r.transaction_id: (plain(r.customer_id, "customer_id"),
                                        plain(r.product_id, "product_id"))
                     for r in conn.execute(select(sales))}
        got_rejects = sorted((plain(r.customer_id, "customer_id"), plain(r.product_id, "product_id"),
                              plain(r.raw_text, "raw_text")) for r in conn.execute(select(sales_rejects)))
        tokens = conn.execute(select(dim_products.c.product_token)).scalars()
        got_products = sorted(plain(t, "product_id") for t in tokens)
    dispose_all()
    assert got_sales == {f"T{i:05d}": (customer(i), product(i)) for i in range(ROWS)}
    assert got_rejects == sorted((customer(i), product(i), f"R{i},{customer(i)}") for i in range(30))
    assert got_products == sorted(product(i) for i in range(PRODUCTS))
    staged = pq.read_table(data_dir / "staging/encrypted/2024-03-01/fragment.parquet")
    assert [plain(t, "customer_id") for t in staged["customer_id"].to_pylist()] == \
        [customer(i) for i in range(40)]
    streaming = final.tink_json("streaming")
    # sealed before the name binding (SEAL_AD alone), re-sealed bound: SEAL_AD, a zero byte, the name
    assert {p: tink_open(streaming, (data_dir / p).read_bytes(), SEAL_AD + b"\x00" + p.encode())
            for p in plain_files} == plain_files

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cmd_key_status(argparse.Namespace()) == 0
