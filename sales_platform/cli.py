"""The `sales-platform` command: generate data, run the pipeline, decrypt tokens."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

from sales_platform.core import settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME if set, else <data_dir>/dagster_home with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = PROJECT_ROOT / "dagster.yaml"
    if config.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(config, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


def cmd_generate(args: argparse.Namespace) -> int:
    from sales_platform.core.generator import GeneratorSettings, generate

    root = settings.data_dir()
    written = generate(
        root / "incoming", root / "catalogue" / "products.csv", date.fromisoformat(args.start),
        args.days, args.rows_per_day,
        GeneratorSettings(seed=args.seed, customers=args.customers, products=args.products,
                          defect_rate=args.defect_rate),
    )
    total = sum(rows for _, rows in written)
    print(f"wrote {len(written)} file(s), {total} rows, into {root / 'incoming'}")
    print(f"catalogue: {root / 'catalogue' / 'products.csv'}")
    return 0


def _partition_range(first: str, last: str) -> dict[str, str]:
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def run_pipeline(first: str, last: str) -> bool:
    """Products, then the daily assets for [first, last] in one run, then rollups and exports."""
    import dagster as dg

    from sales_platform.definitions import defs

    _ensure_dagster_home()
    _wait_for_settled_drops()
    ok = True
    with dg.DagsterInstance.get() as instance:
        for job_name, tags in (("products_job", {}),
                               ("daily_sales_job", _partition_range(first, last)),
                               ("rollups_job", {})):
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, run_config=QUIET)
            print(f"{job_name}: {'succeeded' if result.success else 'FAILED'} (run {result.run_id})")
            ok = ok and result.success
    return ok


def _wait_for_settled_drops() -> None:
    """Files just written (``generate`` right before ``run``) are taken once settled: wait for that
    rather than leave them for the next run."""
    import time

    from sales_platform.core.intake import pending_files

    settle = float(settings.env_number(settings.SETTLE_S, 2.0, 0.0))
    newest = max((p.stat().st_mtime for p in pending_files(settings.data_dir() / "incoming")),
                 default=0.0)
    remaining = newest + settle - time.time()
    if 0 < remaining <= settle:
        time.sleep(remaining + 0.05)


def cmd_run(args: argparse.Namespace) -> int:
    first = args.first or args.start
    last = args.last or (date.fromisoformat(first) + timedelta(days=args.days - 1)).isoformat()
    ok = run_pipeline(first, last)
    print_summary(first, last)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    cmd_generate(args)
    args.first = args.last = None
    return cmd_run(args)


def print_summary(first: str, last: str) -> None:
    from sqlalchemy import func, select

    from sales_platform.core.warehouse.tables import (
        file_ledger,
        metadata,
        pending_days,
        sales,
        sales_rejects,
    )
    from sales_platform.resources.factory import resolved, warehouse_resource

    warehouse = resolved(warehouse_resource())
    engine = warehouse.engine()
    d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
    with engine.connect() as conn:
        loaded = conn.execute(select(func.count()).select_from(sales)
                              .where(sales.c.sale_date.between(d0, d1))).scalar_one()
        rejects = conn.execute(select(sales_rejects.c.reason, func.count())
                               .group_by(sales_rejects.c.reason)).all()
        ledger = conn.execute(select(file_ledger.c.status, func.count())
                              .group_by(file_ledger.c.status)).all()
        blocked = set(conn.execute(select(file_ledger.c.error)
                                   .where(file_ledger.c.status == "blocked")).scalars())
        pending = sorted(d.isoformat() for d in conn.execute(select(pending_days.c.sale_date))
                         .scalars())
    root = settings.data_dir()
    print(f"\nSummary for {first} .. {last}")
    print(f"  rows loaded into sales: {loaded}")
    print(f"  rows rejected: {sum(n for _, n in rejects)}"
          + "".join(f"\n    {reason}: {n}" for reason, n in sorted(rejects)))
    print("  files: " + ", ".join(f"{status}={n}" for status, n in sorted(ledger)))
    for line in sorted(blocked):
        print(f"  BLOCKED {line}")
    if pending:
        print(f"  days waiting for a load: {', '.join(pending)}")
    print(f"  tables: {', '.join(sorted(metadata.tables))}")
    print(f"  database: {warehouse.display_url()}")
    print(f"  quarantine: {root / 'quarantine'}  archive: {root / 'archive'}")
    print(f"  UI: make ui  (DAGSTER_HOME={os.environ.get('DAGSTER_HOME')}), then http://127.0.0.1:3000")


def cmd_decrypt(args: argparse.Namespace) -> int:
    from sales_platform.core.crypto import CryptoError, Tokenizer, unseal_file
    from sales_platform.resources.factory import platform_resource, resolved

    keyring = resolved(platform_resource()).keyring()
    if args.file:
        out = Path(args.out or Path(args.file).name.removesuffix(".sealed"))
        unseal_file(keyring, Path(args.file), out)
        print(f"decrypted {args.file} -> {out}")
        return 0
    tokenizer = Tokenizer(keyring)
    status = 0
    for token in args.tokens:
        try:
            print(f"{token}\t{tokenizer.decrypt(token)}")
        except CryptoError as exc:
            print(f"{token}\tERROR: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_api(args: argparse.Namespace) -> int:
    from sales_platform.products.api import serve

    store = args.store or str(settings.data_dir() / "products_api.sqlite")
    serve(args.host, args.port, store, os.environ.get(settings.API_TOKEN) or None)
    return 0


def cmd_atlas_tables(args: argparse.Namespace) -> int:
    from sales_platform.governance.lineage import atlas_tables_command

    for path in atlas_tables_command(Path(args.export), Path(args.out)):
        print(path)
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from sales_platform.core.rotation_cli import cmd_rotate_keys as rotate

    return rotate(args)


def cmd_key_status(args: argparse.Namespace) -> int:
    from sales_platform.core.rotation_cli import cmd_key_status as status

    return status(args)


def _add_generate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", default=settings.start_date(), help="first sale date")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--defect-rate", type=float, default=0.02,
                        help="share of rows with an injected defect (0 for clean data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sales-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write mock daily sales CSVs into the drop zone")
    _add_generate_options(gen)
    gen.set_defaults(func=cmd_generate)
    run = sub.add_parser("run", help="land drops and materialize the sales assets for a range")
    run.add_argument("--start", default=settings.start_date())
    run.add_argument("--days", type=int, default=7)
    run.add_argument("--first", help="first partition (default --start)")
    run.add_argument("--last", help="last partition (default first + days - 1)")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="generate mock data, then run the pipeline on it")
    _add_generate_options(demo)
    demo.set_defaults(func=cmd_demo)
    dec = sub.add_parser("decrypt", help="decrypt tokens or a sealed file (needs the key)")
    dec.add_argument("tokens", nargs="*")
    dec.add_argument("--file", help="a sealed file (archive/…) to decrypt")
    dec.add_argument("--out", help="where to write the decrypted file")
    dec.set_defaults(func=cmd_decrypt)
    api = sub.add_parser("api", help="serve the products API (token from SALES_PLATFORM_API_TOKEN)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=5050)
    api.add_argument("--store", help="SQLite store (default <DATA_DIR>/products_api.sqlite)")
    api.set_defaults(func=cmd_api)
    atlas = sub.add_parser("atlas-tables", help="Apache Atlas JSON export -> CSV + Markdown tables")
    atlas.add_argument("export", help="Atlas v2 entities JSON (or ZIP) export")
    atlas.add_argument("--out", default="atlas_tables", help="output folder")
    atlas.set_defaults(func=cmd_atlas_tables)
    rotate = sub.add_parser("rotate-keys", help="re-encrypt every token and sealed file under the active "
                            "key (resumable: rerun after an interruption)")
    rotate.add_argument("--batch-size", type=int, default=5000, help="rows per transaction")
    rotate.add_argument("--dry-run", action="store_true", help="only print counts per key id")
    rotate.set_defaults(func=cmd_rotate_keys)
    status = sub.add_parser("key-status", help="token and sealed-file counts per key id (exit 1 while "
                            "anything is under another key than the active one)")
    status.set_defaults(func=cmd_key_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
