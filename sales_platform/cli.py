"""The `sales-platform` command: generate data, run the pipeline, decrypt tokens."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sales_platform.core import settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
PROG = "sales-platform"


class CliError(Exception):
    """A usage or input problem: printed as one line, exit code 2, nothing written."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, but none for options whose help already says what they default to."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _preflight(connect: bool = True) -> None:
    """Every setting checked before anything is written (raises ConfigurationError); settings
    that work but protect less are printed as warnings."""
    from sales_platform.core.preflight import require_valid, warnings

    require_valid(connect=connect)
    for warning in warnings():
        print(f"{PROG}: warning: {warning.line()}", file=sys.stderr)


def _ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME if set, else <data_dir>/dagster_home with the project's dagster.yaml."""
    home = Path(settings.value(settings.DAGSTER_HOME) or settings.data_dir() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = PROJECT_ROOT / "dagster.yaml"
    if config.exists() and not (home / "dagster.yaml").exists():
        shutil.copyfile(config, home / "dagster.yaml")  # not its mode: private like the rest
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sales_platform.core.generator import GeneratorSettings, generate
    from sales_platform.core.preflight import ConfigurationError, check_data_dir

    if problems := check_data_dir():
        raise ConfigurationError(problems)
    if not 0.0 <= args.defect_rate <= 1.0:
        raise CliError(f"--defect-rate {args.defect_rate} must be between 0 and 1")
    root = settings.data_dir()
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and not out.parent.is_dir():
        raise CliError(f"--out {out}: folder {out.parent} does not exist")
    with tqdm(total=1 if out else args.days, unit="file", desc="generate", disable=None) as bar:
        written = generate(
            root / "incoming", root / "catalogue" / "products.csv", args.start,
            args.days, args.rows_per_day,
            GeneratorSettings(seed=args.seed, customers=args.customers, products=args.products,
                              defect_rate=args.defect_rate),
            out=out, progress=lambda path, rows: bar.update(1))
    total = sum(rows for _, rows in written)
    where = out if out else root / "incoming"
    print(f"wrote {len(written)} file(s), {total} rows, into {where}")
    print(f"catalogue: {root / 'catalogue' / 'products.csv'}")
    return 0


def run_pipeline(first: str, last: str) -> bool:
    """Products, then the daily assets for [first, last] in one run, then rollups and exports."""
    import dagster as dg

    from sales_platform.cli_runs import run_job
    from sales_platform.partitions import partition_range_tags

    _ensure_dagster_home()
    _wait_for_settled_drops()
    ok = True
    # landed_files first (it owns landing; raw_sales only lands what is still pending), so the UI
    # shows the landing like a sensor-driven one
    jobs = (("products_job", {}), ("land_files_job", {}),
            ("daily_sales_job", partition_range_tags(first, last)), ("rollups_job", {}))
    with dg.DagsterInstance.get() as instance:
        for number, (job_name, tags) in enumerate(jobs, start=1):
            print(f"[{number}/{len(jobs)}] {job_name} ...", flush=True)
            started = datetime.now(UTC)
            run_id, success = run_job(instance, job_name, tags, QUIET)
            took = (datetime.now(UTC) - started).total_seconds()
            print(f"[{number}/{len(jobs)}] {job_name}: {'succeeded' if success else 'FAILED'} "
                  f"in {took:.1f}s (run {run_id})", flush=True)
            if not success:
                _alert_failed_run(instance, run_id)
            ok = ok and success
    return ok


def _alert_failed_run(instance, run_id: str) -> None:
    """A failed CLI run raises the same alert as a daemon or UI run (the run-failure sensor only
    sees runs launched through a code location); one line per failed step on stderr."""
    from sales_platform.defs.governance.alerts import alert_for_run, write_alert

    alert = alert_for_run(instance, run_id)
    path = write_alert(alert)
    for step in alert.failed_steps or [{"step": alert.job_name, "error": alert.message}]:
        first = (step.get("error") or "failed").strip().splitlines()
        print(f"  {step.get('step')}: {first[0] if first else 'failed'}", file=sys.stderr)
    print(f"  alert written to {path}", file=sys.stderr)


def _wait_for_settled_drops() -> None:
    """Files just written (``generate`` right before ``run``) are taken once settled: wait for that
    rather than leave them for the next run."""
    import time

    from sales_platform.core.intake import pending_files
    from sales_platform.core.store import DataAreas

    settle = float(settings.env_number(settings.SETTLE_S, 2.0, 0.0))
    newest = max((p.stat().st_mtime for folder in DataAreas(settings.data_dir()).drop_folders
                  for p in pending_files(folder)), default=0.0)
    remaining = newest + settle - time.time()
    if 0 < remaining <= settle:
        time.sleep(remaining + 0.05)


def partition_range(first: date, last: date | None, days: int, today: date | None = None
                    ) -> tuple[date, date]:
    """The validated [first, last] range: in order and within the daily partitions. Without
    ``last`` the range is ``days`` long but ends today at the latest; an error names only dates
    the user typed."""
    today = today or datetime.now(UTC).date()
    if first > today:
        raise CliError(f"{first} is after today ({today} UTC): that partition does not exist yet")
    if last is None:
        last = min(first + timedelta(days=days - 1), today)
    if first > last:
        raise CliError(f"--first {first} is after --last {last}")
    start = date.fromisoformat(settings.start_date())
    if first < start:
        raise CliError(f"{first} is before the first partition {start} "
                       f"({settings.START_DATE}); use a later --first/--start")
    if last > today:
        raise CliError(f"{last} is after today ({today} UTC): that partition does not exist yet")
    return first, last


def cmd_run(args: argparse.Namespace) -> int:
    first, last = partition_range(args.first or args.start, args.last, args.days)
    _preflight()
    ok = run_pipeline(first.isoformat(), last.isoformat())
    print_summary(first.isoformat(), last.isoformat(), verbose=args.verbose)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    partition_range(args.start, None, args.days)
    # `demo` is explicit demo mode: without a key, a demo key under the data dir (warned)
    os.environ[settings.DEMO] = "1"
    _preflight()
    cmd_generate(args)
    args.first = args.last = None
    return cmd_run(args)


def cmd_check(args: argparse.Namespace) -> int:
    from sales_platform.core.preflight import ConfigurationError, problems, summary, warnings

    found = problems(connect=not args.offline)
    if found:
        raise ConfigurationError(found)
    warned = warnings()
    print(f"configuration OK, with {len(warned)} warning(s)" if warned else "configuration OK")
    for warning in warned:
        print(f"  warning: {warning.line()}")
    for line in summary():
        print(f"  {line}")
    return 0


def _range_counts(engine, d0: date, d1: date) -> dict:
    """What the warehouse holds for the days ``d0``..``d1``: rows, rejects by reason (with the
    landing rejects of the range's files, which have no sale date), file versions, blocked days
    and versions blocked at landing (also those without a day: every row rejected)."""
    import json

    from sqlalchemy import and_, func, select

    from sales_platform.core.quality import is_landing_block
    from sales_platform.core.warehouse.tables import file_ledger, pending_days, sales, sales_rejects

    days = {(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)}
    with engine.connect() as conn:
        loaded = conn.execute(select(func.count()).select_from(sales)
                              .where(sales.c.sale_date.between(d0, d1))).scalar_one()
        files = [r for r in conn.execute(select(file_ledger.c.file_name, file_ledger.c.sha256,
                                                file_ledger.c.status, file_ledger.c.days_touched,
                                                file_ledger.c.error)).mappings()
                 if days & set(json.loads(r["days_touched"] or "[]"))
                 or (r["status"] == "blocked" and r["days_touched"] in (None, "[]"))]
        rejects = dict(conn.execute(select(sales_rejects.c.reason, func.count())
                                    .where(sales_rejects.c.sale_date.between(d0, d1))
                                    .group_by(sales_rejects.c.reason)).all())
        versions = {(f["file_name"], f["sha256"]) for f in files}
        for name, sha, reason in conn.execute(select(
                sales_rejects.c.source_file, sales_rejects.c.source_sha256, sales_rejects.c.reason)
                .where(sales_rejects.c.sale_date.is_(None))).all():
            if (name, sha) in versions:
                rejects[f"{reason} (no sale date)"] = rejects.get(f"{reason} (no sale date)", 0) + 1
        pending = sorted(d.isoformat() for d in conn.execute(
            select(pending_days.c.sale_date).where(and_(pending_days.c.sale_date >= d0,
                                                        pending_days.c.sale_date <= d1))).scalars())
        all_time = (conn.execute(select(func.count()).select_from(sales)).scalar_one(),
                    conn.execute(select(func.count()).select_from(sales_rejects)).scalar_one())
    statuses: dict[str, int] = {}
    for f in files:
        statuses[f["status"]] = statuses.get(f["status"], 0) + 1
    blocked = sorted({line for f in files if f["status"] == "blocked"
                      for line in (f["error"] or "").splitlines()
                      if line[:10] in days or is_landing_block(line)})
    return {"loaded": loaded, "rejects": rejects, "statuses": statuses, "blocked": blocked,
            "pending": pending, "all_time": all_time}


USER_TABLES = ("sales", "sales_rejects", "file_ledger", "dim_products", "agg_sales_daily",
               "agg_sales_by_product", "agg_sales_by_customer", "agg_sales_monthly",
               "agg_sales_yearly", "agg_sales_by_category_monthly")


def print_summary(first: str, last: str, verbose: bool = False) -> None:
    from sales_platform.core.warehouse.tables import metadata
    from sales_platform.resources.factory import resolved, warehouse_resource

    warehouse = resolved(warehouse_resource())
    counts = _range_counts(warehouse.engine(), date.fromisoformat(first), date.fromisoformat(last))
    root = settings.data_dir()
    print(f"\nSummary for {first} .. {last}")
    print(f"  rows loaded into sales: {counts['loaded']}")
    print(f"  rows rejected: {sum(counts['rejects'].values())}"
          + "".join(f"\n    {reason}: {n}" for reason, n in sorted(counts["rejects"].items())))
    print("  files with rows in the range: "
          + (", ".join(f"{status}={n}" for status, n in sorted(counts["statuses"].items())) or "none"))
    for line in counts["blocked"]:
        print(f"  BLOCKED {line}")
    if counts["pending"]:
        print(f"  days waiting for a load: {', '.join(counts['pending'])}")
    print(f"  all days (whole warehouse): {counts['all_time'][0]} rows in sales, "
          f"{counts['all_time'][1]} rejected")
    print(f"  tables: {', '.join(USER_TABLES)}")
    if verbose:
        internal = sorted(set(metadata.tables) - set(USER_TABLES))
        print(f"  internal tables: {', '.join(internal)}")
    print(f"  database: {warehouse.display_url()}")
    print(f"  quarantine: {root / 'quarantine'}  archive: {root / 'archive'}")
    print(f"  UI: make ui  (DAGSTER_HOME={settings.value(settings.DAGSTER_HOME)}), then http://127.0.0.1:3000")


def cmd_decrypt(args: argparse.Namespace) -> int:
    from sales_platform.core.crypto import CryptoError, Tokenizer, unseal_file
    from sales_platform.resources.factory import platform_resource, resolved

    if not args.file and not args.tokens:
        raise CliError("give one or more tokens, or --file SEALED --out TARGET")
    if args.file and args.tokens:
        raise CliError("give tokens or --file, not both")
    if args.file and not args.out:
        raise CliError("--file needs --out TARGET (or --out - for standard output): plaintext is "
                       "never written to an implicit place")
    if args.file and not Path(args.file).is_file():
        raise CliError(f"--file {args.file}: no such file")
    try:
        keyring = resolved(platform_resource()).keyring()
    except CryptoError as exc:  # e.g. a master key that does not open the keyset
        what = args.file or "the tokens"
        raise CliError(f"cannot decrypt {what}: {exc}; nothing was written") from None
    if args.file:
        try:
            target = _unseal_to(keyring, Path(args.file), args.out, unseal_file)
        except CryptoError as exc:
            raise CliError(f"cannot decrypt {args.file}: {exc}; nothing was written") from None
        if target:
            print(f"decrypted {args.file} -> {target}", file=sys.stderr)
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


def _unseal_to(keyring, source: Path, out: str, unseal_file) -> Path | None:
    """Decrypt into a private temporary file next to the target, renamed only once whole: a wrong
    key or a truncated file leaves no plaintext behind. ``out == "-"`` streams to stdout."""
    import tempfile

    if out == "-":
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "plain"
            unseal_file(keyring, source, plain)
            with plain.open("rb") as handle:
                shutil.copyfileobj(handle, sys.stdout.buffer)
        return None
    target = Path(out).expanduser()
    if not target.parent.is_dir():
        raise CliError(f"--out {target}: folder {target.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        unseal_file(keyring, source, Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def cmd_replay(args: argparse.Namespace) -> int:
    from sales_platform.core.intake import ReplayError, replay_quarantined
    from sales_platform.core.store import DataAreas

    areas = DataAreas(settings.data_dir())
    for name in args.files:
        try:
            target = replay_quarantined(areas, Path(name))
        except ReplayError as exc:
            raise CliError(str(exc)) from None
        print(f"{name} -> {target}: {_replay_outcome(target)}")
    return 0


def _replay_outcome(target: Path) -> str:
    """What the next landing will do with a replayed file: an unchanged one is said so at once."""
    from sales_platform.core.landing import fingerprint
    from sales_platform.core.warehouse.ledger import quarantined_with_content
    from sales_platform.resources.factory import resolved, warehouse_resource

    sha, _ = fingerprint(target)
    earlier = quarantined_with_content(resolved(warehouse_resource()).engine(), sha)
    if earlier is None:
        return "lands as a new version on the next run or sensor tick"
    reason = (earlier["error"] or "no reason recorded").splitlines()[0]
    return (f"UNCHANGED since it was quarantined ({reason}); it is taken again as it is on the "
            "next run or sensor tick, and quarantined again unless the cause was a setting you "
            "have since changed: fix the file first")


def cmd_reprocess(args: argparse.Namespace) -> int:
    from sales_platform.cli_archive import cmd_reprocess as reprocess

    return reprocess(sys.modules[__name__], args)


def cmd_rebuild(args: argparse.Namespace) -> int:
    from sales_platform.cli_archive import cmd_rebuild as rebuild

    return rebuild(sys.modules[__name__], args)


def cmd_api(args: argparse.Namespace) -> int:
    from sales_platform.api.products import serve

    store = args.store or str(settings.data_dir() / "products_api.sqlite")
    serve(args.host, args.port, store, settings.value(settings.API_TOKEN) or None,
          certfile=args.certfile, keyfile=args.keyfile, workers=args.workers)
    return 0


def cmd_atlas_tables(args: argparse.Namespace) -> int:
    from sales_platform.defs.governance.lineage import atlas_tables_command

    for path in atlas_tables_command(Path(args.export), Path(args.out)):
        print(path)
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from sales_platform.rotation_cli import cmd_rotate_keys as rotate

    return rotate(args)


def cmd_key_status(args: argparse.Namespace) -> int:
    from sales_platform.rotation_cli import cmd_key_status as status

    return status(args)


def _add_generate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=_iso_date, default=settings.start_date(),
                        help="first sale date (YYYY-MM-DD)")
    parser.add_argument("--days", type=_positive_int, default=7, help="number of days, one file each")
    parser.add_argument("--rows-per-day", type=_positive_int, default=3000,
                        help="average rows per day (weekdays and December get more)")
    parser.add_argument("--seed", type=int, default=42,
                        help="random seed: the same seed and dates give the same files")
    parser.add_argument("--customers", type=_positive_int, default=20_000, help="distinct customers")
    parser.add_argument("--products", type=_positive_int, default=500, help="products in the catalogue")
    parser.add_argument("--defect-rate", type=float, default=0.02,
                        help="share of rows with an injected defect (0 for clean data)")


def _sub(sub, name: str, help_text: str, func) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
    parser.set_defaults(func=func)
    # also after the subcommand (`run … --debug`); SUPPRESS keeps the main parser's value otherwise
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks instead of one-line errors")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    gen = _sub(sub, "generate", "write mock daily sales CSVs into the drop zone", cmd_generate)
    _add_generate_options(gen)
    gen.add_argument("--out", help="write all days into this one CSV file instead of the drop zone "
                     "(an existing catalogue is then left unchanged)")
    run = _sub(sub, "run", "land drops and materialize the sales assets for a range", cmd_run)
    run.add_argument("--start", type=_iso_date, default=settings.start_date(),
                     help="first day when --first is not given")
    run.add_argument("--days", type=_positive_int, default=7, help="days from the first day")
    run.add_argument("--first", type=_iso_date, help="first partition (default: --start)")
    run.add_argument("--last", type=_iso_date,
                     help="last partition (default: first + days - 1, at most today)")
    run.add_argument("--verbose", action="store_true",
                     help="the summary also lists the platform's internal tables")
    demo = _sub(sub, "demo", "generate mock data, then run the pipeline on it", cmd_demo)
    _add_generate_options(demo)
    demo.set_defaults(out=None)
    demo.add_argument("--verbose", action="store_true",
                      help="the summary also lists the platform's internal tables")
    check = _sub(sub, "check", "check every setting (and reach the database, blob, API) before a run; "
                 "exit 2 with one line per problem", cmd_check)
    check.add_argument("--offline", action="store_true", help="skip the network round trips")
    dec = _sub(sub, "decrypt", "decrypt tokens or a sealed file (needs the key)", cmd_decrypt)
    dec.add_argument("tokens", nargs="*", help="tokens to decrypt")
    dec.add_argument("--file", help="a sealed file (archive/…) to decrypt")
    dec.add_argument("--out", help="where to write the decrypted file (- for standard output)")
    replay = _sub(sub, "replay", "put fixed quarantined files back into the drop zone under their "
                  "original names (their .reason.txt is removed)", cmd_replay)
    replay.add_argument("files", nargs="+", help="quarantined files (names in <DATA_DIR>/quarantine/ "
                        "or paths)")
    from sales_platform.cli_archive import add_commands  # reprocess, rebuild

    add_commands(sub, _sub, _iso_date, cmd_reprocess, cmd_rebuild)
    api = _sub(sub, "api", "serve the products API (token from SALES_PLATFORM_API_TOKEN)", cmd_api)
    api.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    api.add_argument("--port", type=int, default=5050, help="TCP port")
    api.add_argument("--store", help="SQLite store (default <DATA_DIR>/products_api.sqlite)")
    api.add_argument("--certfile", help="PEM server certificate (chain): serve HTTPS")
    api.add_argument("--keyfile", help="PEM private key of --certfile")
    api.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    atlas = _sub(sub, "atlas-tables", "Apache Atlas JSON export -> CSV + Markdown tables",
                 cmd_atlas_tables)
    atlas.add_argument("export", help="Atlas v2 entities JSON (or ZIP) export")
    atlas.add_argument("--out", default="atlas_tables", help="output folder")
    rotate = _sub(sub, "rotate-keys", "re-encrypt every token and sealed file under the active key "
                  "(resumable: rerun after an interruption)", cmd_rotate_keys)
    rotate.add_argument("--batch-size", type=_positive_int, default=5000, help="rows per transaction")
    rotate.add_argument("--dry-run", action="store_true", help="only print counts per key id")
    _sub(sub, "key-status", "token and sealed-file counts per key id (exit 1 while anything is under "
         "another key than the active one)", cmd_key_status)
    return parser


def _one_line(exc: BaseException) -> str:
    from sales_platform.core.redact import redact_text

    lines = str(exc).strip().splitlines()
    return redact_text(lines[0] if lines else type(exc).__name__)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sales_platform.core.crypto import CryptoError
    from sales_platform.core.preflight import ConfigurationError

    try:
        from sales_platform.core.private_files import secure_start

        secure_start()  # umask 077, data folders 0700, a linked data folder refused
        return args.func(args)
    except ConfigurationError as exc:
        if args.debug:
            traceback.print_exc()
        for problem in exc.problems:
            print(f"{PROG}: configuration: {problem.line()}", file=sys.stderr)
        return 2
    except (CliError, settings.SettingError, CryptoError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns a crash into one line
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {type(exc).__name__}: {_one_line(exc)} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
