"""A blind list of deliberate one-line semantic bugs (mutations) for measuring the test suite.

Written by a helper session that read only README.md, ARCHITECTURE.md, docs/*.md and the sources
under sales_platform/core/ (recursively). It did not open sales_platform_tests/, tools/ (the
earlier mutation list and its report), any other test file, or git history. Nothing here was tuned
to the tests: each entry is a bug a developer could plausibly make, chosen for behaviour the
documentation promises (thresholds, period boundaries, normalisation, ledger states, counts,
associated data, ...). None is meant to crash on import or to be equivalent to the original.

Each entry: (id, file relative to the repository root, exact original snippet (occurs once in the
file), replacement, description, area).
"""

from __future__ import annotations

BLIND_MUTATIONS: list[tuple[str, str, str, str, str, str]] = [
    # --- rules (core/quality.py, core/categories.py, core/products.py) --------------------------
    (
        "B01",
        "sales_platform/core/quality.py",
        "(QUANTITY_OUTLIER, (quantity > rules.max_quantity).to_numpy()),",
        "(QUANTITY_OUTLIER, (quantity >= rules.max_quantity).to_numpy()),",
        "quantity_outlier at the threshold itself: a quantity equal to SALES_PLATFORM_MAX_QUANTITY "
        "(1000) is rejected although only '> max' is an outlier",
        "rules",
    ),
    (
        "B02",
        "sales_platform/core/quality.py",
        "(QUANTITY_NOT_POSITIVE, (quantity <= 0).to_numpy()),",
        "(QUANTITY_NOT_POSITIVE, (quantity < 0).to_numpy()),",
        "quantity 0 is no longer quantity_not_positive: zero-quantity sales are loaded",
        "rules",
    ),
    (
        "B03",
        "sales_platform/core/identifiers.py",  # moved from quality.py (7a9e149); same snippet
        "cleaned = pc.utf8_upper(trimmed)",
        "cleaned = trimmed",
        "identifiers are trimmed but no longer upper-cased on the (ASCII) fast path: 't1' and 'T1' "
        "become two sales, lower-case product ids miss dim_products",
        "rules",
    ),
    (
        "B04",
        "sales_platform/core/identifiers.py",  # moved from quality.py (7a9e149); same snippet
        "too_long = pc.fill_null(pc.greater(pc.utf8_length(arr), MAX_IDENTIFIER_LENGTH), False)",
        "too_long = pc.fill_null(pc.greater_equal(pc.utf8_length(arr), MAX_IDENTIFIER_LENGTH), False)",
        "invalid_identifier off by one: an identifier of exactly 64 characters is rejected",
        "rules",
    ),
    (
        "B05",
        "sales_platform/core/quality.py",
        "(BEFORE_START_DATE, (parsed < start).to_numpy()),",
        "(BEFORE_START_DATE, (parsed <= start).to_numpy()),",
        "before_start_date includes midnight of SALES_PLATFORM_START_DATE itself",
        "rules",
    ),
    (
        "B06",
        "sales_platform/core/quality.py",
        "limit = utc_naive(now) + rules.future_tolerance",
        "limit = utc_naive(now)",
        "the 1 h future tolerance is dropped: a timestamp a few minutes ahead of now is "
        "future_timestamp",
        "rules",
    ),
    (
        "B07",
        "sales_platform/core/quality.py",
        "for reason, n in rejects_by_reason.items() if reason not in COLLAPSED_REASONS)",
        "for reason, n in rejects_by_reason.items())",
        "reject rate counts collapsed duplicate_identical copies as failures, so re-sent identical "
        "rows can block a day",
        "rules",
    ),
    (
        "B08",
        "sales_platform/core/categories.py",
        "return LABELS[0] if amount <= low else LABELS[1] if amount <= high else LABELS[2]",
        "return LABELS[0] if amount < low else LABELS[1] if amount <= high else LABELS[2]",
        "sales_category no longer right-closed at the low bound: revenue exactly 100 is Medium "
        "instead of Low",
        "rules",
    ),
    (
        "B09",
        "sales_platform/core/products.py",
        # 7a9e149 folds with normalize_id (trim, NFC, upper case): the same bug is a fold that
        # only trims
        'folded = normalize_id(item["product_id"])',
        'folded = item["product_id"].strip()',
        "API items whose ids differ only in case are no longer detected as one product: both are "
        "kept and collide once the warehouse upper-cases them",
        "rules",
    ),
    # --- dedupe -----------------------------------------------------------------------------------
    (
        "B10",
        "sales_platform/core/dedupe.py",
        'CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_ts")',
        'CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "sale_ts")',
        "copies of an id that differ only in quantity count as identical (one loaded, the other "
        "collapsed) instead of duplicate_conflicting",
        "dedupe",
    ),
    (
        "B11",
        "sales_platform/core/dedupe.py",
        "conflicting = tid_of_pair[copies > 1]",
        "conflicting = tid_of_pair[copies > 2]",
        "an id needs three different contents to be conflicting: two disagreeing copies are treated "
        "as identical duplicates",
        "dedupe",
    ),
    # --- csv (reading, headers) -------------------------------------------------------------------
    (
        "B12",
        "sales_platform/core/schema.py",
        'folded = re.sub(r"[^0-9a-z]+", "_", name.strip().lower())',
        'folded = re.sub(r"[^0-9a-z]+", "_", name.strip())',
        "headers are no longer case-folded: 'TransactionID' or 'Quantity' no longer map onto the "
        "contract",
        "csv",
    ),
    (
        "B13",
        "sales_platform/core/csvread.py",
        'frame.insert(0, "source_row", range(state.rows_read + 1, state.rows_read + len(frame) + 1))',
        'frame.insert(0, "source_row", range(state.rows_read, state.rows_read + len(frame)))',
        "source_row is 0-based on the fast (Arrow) path while the exact path stays 1-based",
        "csv",
    ),
    (
        "B14",
        "sales_platform/core/csvread.py",
        "if not fields:",
        "if not any(fields):",
        "a record whose fields are all empty (',,,,') is skipped as a blank line on the exact path: "
        "its row ends nowhere and later source_row numbers shift",
        "csv",
    ),
    (
        "B15",
        "sales_platform/core/landing.py",
        'if len(header) == 1 and any(d in first_line for d in ";\\t|"):',
        'if len(header) == 1 and any(d in first_line for d in ";|"):',
        "a tab-separated file is no longer reported as 'wrong delimiter' (only as a header that "
        "misses the required columns)",
        "csv",
    ),
    # --- landing ----------------------------------------------------------------------------------
    (
        "B16",
        "sales_platform/core/landing.py",
        "if len(header) > self.max_columns:",
        "if len(header) >= self.max_columns:",
        "a file exactly SALES_PLATFORM_MAX_COLUMNS wide is quarantined (only wider files should be)",
        "landing",
    ),
    (
        "B17",
        "sales_platform/core/landing.py",
        "if result.rows_read == 0:",
        "if result.rows_landed == 0:",
        "a file whose every row is rejected at landing (bad timestamps) is quarantined as 'header "
        "only' instead of landing with its rows rejected",
        "landing",
    ),
    (
        "B18",
        "sales_platform/core/landing.py",
        "if fragment_name_id(old.name) == ident:",
        "if fragment_name_id(old.name) != ident:",
        "a new version no longer removes the landed fragments of the previous version of the same "
        "name: superseded rows are cleaned and loaded again",
        "landing",
    ),
    # --- intake (folder and blob drop zones) ------------------------------------------------------
    (
        "B19",
        "sales_platform/core/intake.py",
        "if not name.lower().endswith(CSV_SUFFIXES):",
        "if not name.endswith(CSV_SUFFIXES):",
        "'*.csv (any case)' broken: SALES.CSV is quarantined as not a .csv file",
        "intake",
    ),
    (
        "B20",
        "sales_platform/core/intake.py",
        'TEMP_SUFFIXES = (".tmp", ".partial", ".part", ".crdownload")',
        'TEMP_SUFFIXES = (".tmp", ".partial", ".part")',
        "a browser download in progress (*.crdownload) is quarantined instead of left alone",
        "intake",
    ),
    (
        "B21",
        "sales_platform/core/intake.py",
        "return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)",
        "return (st.st_ino, st.st_dev, st.st_size)",
        "a file rewritten in place with the same size (new content) counts as unchanged: it is "
        "removed after landing and its new version is lost",
        "intake",
    ),
    (
        "B22",
        "sales_platform/core/intake.py",
        "if before.st_size > self.max_file_bytes:",
        "if before.st_size >= self.max_file_bytes:",
        "a file of exactly SALES_PLATFORM_MAX_FILE_BYTES is quarantined as oversized",
        "intake",
    ),
    (
        "B23",
        "sales_platform/core/dropzone.py",
        'return f"land:{self.sha256}:{name_id(self.name)}:{self.mtime_ns}"',
        'return f"land:{self.sha256}:{name_id(self.name)}"',
        "the sensor run key ignores the mtime: a replayed (re-dropped) file with the same content "
        "and name never gets a new landing run",
        "intake",
    ),
    (
        "B24",
        "sales_platform/core/blob_dropzone.py",
        "if outcome.status in (LANDED, DUPLICATE):",
        "if outcome.status in (LANDED,):",
        "a blob recorded as skipped_duplicate is not moved to the archive prefix: it stays in the "
        "drop zone and is downloaded again on every tick",
        "intake",
    ),
    # --- uploads ----------------------------------------------------------------------------------
    (
        "B25",
        "sales_platform/core/uploads.py",
        "if size + len(block) > max_bytes:",
        "if size > max_bytes:",
        "the size limit is checked before adding the block just read: a body up to one block over "
        "SALES_PLATFORM_UPLOAD_MAX_BYTES is accepted (no 413)",
        "uploads",
    ),
    (
        "B26",
        "sales_platform/core/uploads.py",
        "os.link(temp, target)  # never replaces a drop of the same name that has not landed",
        "os.replace(temp, target)  # never replaces a drop of the same name that has not landed",
        "an upload silently replaces a file of the same name still waiting in the drop zone "
        "instead of answering 409",
        "uploads",
    ),
    (
        "B27",
        "sales_platform/core/uploads.py",
        "if declared_size is not None and declared_size > max_bytes:",
        "if declared_size is not None and declared_size >= max_bytes:",
        "an upload declaring exactly the maximum size is refused with 413",
        "uploads",
    ),
    # --- ledger -----------------------------------------------------------------------------------
    (
        "B28",
        "sales_platform/core/warehouse/ledger.py",
        "file_ledger.c.status.in_(LIVE))).mappings().all()",
        "file_ledger.c.status == LANDED)).mappings().all()",
        "a new version supersedes only a 'landed' predecessor: a loaded or blocked older version "
        "stays live and its days are not requested again",
        "ledger",
    ),
    (
        "B29",
        "sales_platform/core/warehouse/ledger.py",
        "elif row.status not in LIVE:",
        "elif row.status != LOADED:",
        "a duplicate drop overwrites a 'landed' or 'blocked' ledger entry with skipped_duplicate "
        "(only 'loaded' is protected)",
        "ledger",
    ),
    (
        "B30",
        "sales_platform/core/warehouse/ledger.py",
        'if day not in json.loads(row["days_touched"] or "[]"):',
        'if day not in json.loads(row["days_affected"] or "[]"):',
        "a blocked day marks as blocked every version that merely superseded rows there, not only "
        "versions with rows on that day",
        "ledger",
    ),
    (
        "B31",
        "sales_platform/core/warehouse/ledger.py",
        "if complete and any(_older_rows_left(conn, *ident, d) for d in others):",
        "if complete and any(_older_rows_left(conn, *ident, d) for d in own):",
        "'loaded' no longer waits for the superseded version's rows to leave the days only it had",
        "ledger",
    ),
    (
        "B32",
        "sales_platform/core/warehouse/ledger.py",
        "if landed.get(ident, 0) != accounted.get(ident, 0):",
        "if landed.get(ident, 0) > accounted.get(ident, 0) + 1:",
        "a version is marked loaded when all but one of its landed rows are accounted for",
        "ledger",
    ),
    (
        "B33",
        "sales_platform/core/warehouse/ledger.py",
        ".where(file_ledger.c.status.in_((LANDED, BLOCKED)))",
        ".where(file_ledger.c.status.in_((LANDED,)))",
        "blocked versions are no longer listed as awaiting a load",
        "ledger",
    ),
    (
        "B34",
        "sales_platform/core/warehouse/ledger.py",
        "newest = select(func.max(file_ledger.c.file_id)).group_by(file_ledger.c.file_name)",
        "newest = select(func.min(file_ledger.c.file_id)).group_by(file_ledger.c.file_name)",
        "quarantined files are judged by their oldest version: a corrected drop of the same name no "
        "longer clears the quarantine warning (and a later quarantine is not reported)",
        "ledger",
    ),
    # --- loads ------------------------------------------------------------------------------------
    (
        "B35",
        "sales_platform/core/warehouse/loading.py",
        "compared = [*self.content_columns, *LINEAGE_COLUMNS]",
        "compared = [*self.content_columns]",
        "the upsert's change test ignores lineage: a row relinked to a new file version / row keeps "
        "its old source_file, source_sha256 and source_row",
        "loads",
    ),
    (
        "B36",
        "sales_platform/core/warehouse/loading.py",
        "stats.unchanged = int(present or 0) - stats.updated - stats.relinked",
        "stats.unchanged = int(present or 0) - stats.updated",
        "relinked rows are also counted as unchanged (counts no longer add up to staged)",
        "loads",
    ),
    (
        "B37",
        "sales_platform/core/warehouse/loading.py",
        "if vanished:  # the upsert left the day's rows outside the stage as they were",
        "if vanished > 1:  # the upsert left the day's rows outside the stage as they were",
        "a reload from which exactly one row vanished leaves that row in sales",
        "loads",
    ),
    (
        "B38",
        "sales_platform/core/warehouse/tables.py",
        'SALES_CONTENT_COLUMNS = ("customer_id", "product_id", "quantity", "sale_date", "sale_ts")',
        'SALES_CONTENT_COLUMNS = ("customer_id", "product_id", "sale_date", "sale_ts")',
        "a corrected quantity is not a change: the reload counts the row unchanged and keeps the "
        "old quantity",
        "loads",
    ),
    (
        "B39",
        "sales_platform/core/warehouse/loading.py",
        'updated = [*self.content_columns, *LINEAGE_COLUMNS, "loaded_at"]',
        "updated = [*self.content_columns, *LINEAGE_COLUMNS]",
        "an updated row keeps its old loaded_at",
        "loads",
    ),
    (
        "B40",
        "sales_platform/core/warehouse/locks.py",
        "if row[column] is not None and row[column] > stamp:",
        "if row[column] is not None and row[column] >= stamp:",
        "a run built from the same snapshot as the one already recorded is treated as stale: "
        "re-materializing a day from the published layer does nothing",
        "loads",
    ),
    # --- conflicts (transaction identity across days) ---------------------------------------------
    (
        "B41",
        "sales_platform/core/warehouse/conflicts.py",
        "for reason in WITHIN_DAY_REASONS:",
        "for reason in WITHIN_DAY_REASONS[:1]:",
        "identical copies of an id that is also on another day stay duplicate_identical instead of "
        "becoming duplicate_across_days",
        "conflicts",
    ),
    (
        "B42",
        "sales_platform/core/warehouse/conflicts.py",
        "r.c.sale_date != self.day, live_version(r))",
        "r.c.sale_date != self.day)",
        "rejects of superseded file versions still count as copies on another day, so a corrected "
        "file cannot end a cross-day conflict",
        "conflicts",
    ),
    (
        "B43",
        "sales_platform/core/warehouse/conflicts.py",
        "released = sorted(self.before - self.after)",
        "released = sorted(self.after - self.before)",
        "set difference reversed: when a corrected version ends a cross-day conflict, the other "
        "day is not requested again and its row does not come back",
        "conflicts",
    ),
    (
        "B44",
        "sales_platform/core/warehouse/checks.py",
        "not_normal = sales.c.transaction_id != func.upper(func.trim(sales.c.transaction_id))",
        "not_normal = sales.c.transaction_id != func.trim(sales.c.transaction_id)",
        "transaction_id_unique no longer flags a lower-case (non-normalized) id in sales",
        "conflicts",
    ),
    # --- rejects ----------------------------------------------------------------------------------
    (
        "B45",
        "sales_platform/core/warehouse/rejects.py",
        'conn.execute(delete(sales_rejects).where(sales_rejects.c.stage == "landing",',
        'conn.execute(delete(sales_rejects).where(sales_rejects.c.stage == "landing", '
        "sales_rejects.c.source_sha256 == sha,",
        "a new version no longer replaces the landing rejects of the previous version of the same "
        "name: old rejects stay",
        "rejects",
    ),
    (
        "B46",
        "sales_platform/core/warehouse/rejects.py",
        '                       "detail", "raw_text")',
        '                       "detail")',
        "a malformed record's token is no longer written to sales_rejects.raw_text (it ends up in "
        "extras JSON instead)",
        "rejects",
    ),
    # --- aggregates -------------------------------------------------------------------------------
    (
        "B47",
        "sales_platform/core/warehouse/aggregates.py",
        "return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)",
        "return date(year, month, 1), date(year, month % 12 + 1, 1)",
        "December's upper bound is January 1st of the same year: December has no category rows",
        "aggregates",
    ),
    (
        "B48",
        "sales_platform/core/warehouse/aggregates.py",
        "return or_(*(and_(column >= a, column < b) for a, b in (_month_bounds(y, m) for y, m in months)))",
        "return or_(*(and_(column >= a, column <= b) for a, b in (_month_bounds(y, m) for y, m in months)))",
        "a month's category rows also count the sales of the 1st of the next month",
        "aggregates",
    ),
    (
        "B49",
        "sales_platform/core/warehouse/aggregates.py",
        "category = case((dim_products.c.unit_price.is_(None), UNPRICED), (amount <= low, LABELS[0]),",
        "category = case((dim_products.c.unit_price.is_(None), UNPRICED), (amount < low, LABELS[0]),",
        "SQL category cut not right-closed: a revenue exactly at the Low|Medium bound is Medium",
        "aggregates",
    ),
    (
        "B50",
        "sales_platform/core/warehouse/aggregates.py",
        ".where(or_(m.refreshed_at.is_(None), daily.c.latest > m.refreshed_at)))",
        ".where(or_(m.refreshed_at.is_(None), daily.c.latest < m.refreshed_at)))",
        "the changed-months test is inverted: a month whose days were reloaded after its rollup "
        "is not rolled up again",
        "aggregates",
    ),
    (
        "B51",
        "sales_platform/core/warehouse/aggregates.py",
        "if not count:",
        "if count is None:",
        "an Unpriced row (0 transactions) is written for every month, although it is only for "
        "months with unpriced sales",
        "aggregates",
    ),
    # --- exports ----------------------------------------------------------------------------------
    (
        "B52",
        "sales_platform/core/exports.py",
        ".select_from(latest.outerjoin(export_log, and_(log.export_name == name,",
        ".select_from(latest.outerjoin(export_log, and_(",
        "changed years are judged against any export's log row for that year, not this export's: "
        "one table's export hides another's change",
        "exports",
    ),
    (
        "B53",
        "sales_platform/core/exports.py",
        "conn.execute(delete(export_log).where(log.export_name == name, log.year == year))",
        "conn.execute(delete(export_log).where(log.year == year))",
        "logging one export deletes the log rows of every export of that year: they are all "
        "exported again next time",
        "exports",
    ),
    (
        "B54",
        "sales_platform/core/exports.py",
        '"agg_sales_by_year": agg_sales_yearly,',
        '"agg_sales_by_year": agg_sales_monthly,',
        "exports/agg_sales_by_year/<year>.csv holds the monthly table",
        "exports",
    ),
    (
        "B55",
        "sales_platform/core/exports.py",
        'return [c.name for c in table.columns if c.name != "refreshed_at"]',
        "return [c.name for c in table.columns]",
        "the bookkeeping column refreshed_at is exported in every CSV (the column order consumers "
        "rely on changes)",
        "exports",
    ),
    # --- crypto (tokens, sealed files, keys, rotation) -------------------------------------------
    (
        "B56",
        "sales_platform/core/crypto.py",
        'ad = [ad_column(column).encode("utf-8")]',
        'ad = [column.encode("utf-8")]',
        "single-value encrypt ignores the AD aliases: rotated product_token / customer_token values "
        "(and JSON sensitive keys) no longer equal the sales tokens of the same id",
        "crypto",
    ),
    (
        "B57",
        "sales_platform/core/crypto.py",
        "for candidate in (ad_column(column),) if column else GUESSED_COLUMNS:",
        "for candidate in (column,) if column else GUESSED_COLUMNS:",
        "decrypting a product_token / customer_token column uses its own name as associated data "
        "and fails",
        "crypto",
    ),
    (
        "B58",
        "sales_platform/core/datakey.py",
        "if len(raw) < 16:",
        "if len(raw) <= 16:",
        "a 16-byte master key (documented minimum) is refused",
        "crypto",
    ),
    (
        "B59",
        "sales_platform/core/crypto.py",
        'return prefix + struct.pack(">I", counter) + (b"\\x01" if last else b"\\x00")',
        'return prefix + struct.pack(">I", counter) + (b"\\x00" if last else b"\\x01")',
        "the last-segment flag of the streaming nonce is inverted: self-consistent, but sealed "
        "files are no longer Tink's AES256_GCM_HKDF_1MB format",
        "crypto",
    ),
    (
        "B60",
        "sales_platform/core/pipeline.py",
        "for column in dict.fromkeys((*IDENTIFIER_COLUMNS, *sensitive)):",
        "for column in dict.fromkeys(IDENTIFIER_COLUMNS):",
        "the encrypted layer's Arrow path tokenizes only customer_id and product_id: contract-"
        "sensitive columns (email, phone...) reach sales in plaintext",
        "crypto",
    ),
    (
        "B61",
        "sales_platform/core/rotation/tables.py",
        '    TokenTable(agg_sales_by_customer, ("customer_token",)),\n',
        "",
        "key rotation forgets agg_sales_by_customer: its customer tokens stay under the old key",
        "crypto",
    ),
    (
        "B62",
        "sales_platform/core/keyset.py",
        "return [e for e in self.keys if e.status == ENABLED and e.number != self.primary]",
        "return [e for e in self.keys if e.number != self.primary]",
        "disabled (retired) keys stay in the keyring and keep decrypting; a finished rotation still "
        "looks under way",
        "crypto",
    ),
    # --- report -----------------------------------------------------------------------------------
    (
        "B63",
        "sales_platform/core/report.py",
        "return max(first, last - timedelta(days=days - 1)), last",
        "return max(first, last - timedelta(days=days)), last",
        "the report window covers SALES_PLATFORM_REPORT_DAYS + 1 days",
        "report",
    ),
    (
        "B64",
        "sales_platform/core/report.py",
        "if (y, m) in months and total is not None:",
        "if total is not None:",
        "revenue by category includes every month of the window's years, not only the window's",
        "report",
    ),
    # --- settings ---------------------------------------------------------------------------------
    (
        "B65",
        "sales_platform/core/settings.py",
        "if value < minimum or (maximum is not None and value > maximum):",
        "if value <= minimum or (maximum is not None and value > maximum):",
        "a setting equal to its documented minimum (SETTLE_S=0, MAX_REJECT_RATE=0, DAY_WORKERS=1) "
        "is refused",
        "settings",
    ),
    (
        "B66",
        "sales_platform/core/preflight.py",
        "(settings.MAX_REJECT_RATE, 0.2, 0.0, 1.0, False),",
        "(settings.MAX_REJECT_RATE, 0.2, 0.0, 1.0, True),",
        "SALES_PLATFORM_MAX_REJECT_RATE is checked as a whole number: 0.5 is refused by check/run",
        "settings",
    ),
    (
        "B67",
        "sales_platform/core/preflight.py",
        "if first > today:",
        "if first >= today:",
        "a SALES_PLATFORM_START_DATE of today is refused as 'after today'",
        "settings",
    ),
]
