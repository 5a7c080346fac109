"""``POST /uploads`` and ``GET /uploads/<sha256>``: the upload stage on the products API.

POST streams the request body (the CSV file's bytes; its name in ``?name=``) into the uploads
folder (``<DATA_DIR>/uploads``, which only this service writes) through ``core.uploads.receive``;
from there the intake lands it like any drop. Writes are guarded
by the API's own ``X-API-Token`` check (the app's before_request hook covers this blueprint).
GET answers the file version's state from the warehouse's ``file_ledger``; an upload whose file
is gone (or no longer the one received) while the ledger does not know its sha256 is ``lost``.

Configuration is read from the environment the platform already uses: the data folder
(SALES_PLATFORM_DATA_DIR), the warehouse (the one the Dagster resources find, found without them:
core/warehouse/configured.py), the schema contract (SALES_PLATFORM_SCHEMA_CONTRACT / _POLICY) and
SALES_PLATFORM_UPLOAD_MAX_BYTES. Like the products API it imports no Dagster and no resource.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, url_for
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from sales_platform.core import settings
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.uploads import (
    DEFAULT_MAX_UPLOAD_BYTES,
    SHA256,
    UploadRefused,
    check_name,
    receive,
    received_record,
    still_waiting,
    too_large,
)
from sales_platform.core.warehouse.configured import configured_engine
from sales_platform.core.warehouse.tables import file_ledger

LEDGER_FIELDS = ("file_name", "status", "size_bytes", "rows_read", "rows_rejected", "error",
                 "received_at", "processed_at")
LOST = "lost"  # the upload's file went away before the intake took it: upload again


def _contract() -> SchemaContract:
    path = settings.value(settings.SCHEMA_CONTRACT)
    contract = SchemaContract.from_file(path) if path else SchemaContract()
    policy = settings.value(settings.SCHEMA_POLICY)
    return dataclasses.replace(contract, policy=policy) if policy else contract


def uploads_blueprint(data_dir: Path | None = None, engine: Engine | None = None,
                      max_bytes: int | None = None) -> Blueprint:
    """The upload endpoints; arguments default to the platform's environment."""
    root = data_dir or settings.data_dir()
    limit = max_bytes or int(settings.env_number(settings.UPLOAD_MAX_BYTES, DEFAULT_MAX_UPLOAD_BYTES,
                                                 1, integer=True))
    contract = _contract()
    records = root / "staging" / "uploads"
    uploads = DataAreas(root).uploads
    bp = Blueprint("uploads", __name__)

    @cache
    def ledger_engine() -> Engine:
        return engine if engine is not None else configured_engine()

    @bp.errorhandler(UploadRefused)
    def refused(exc: UploadRefused) -> tuple[Response, int]:
        return jsonify({"error": exc.message}), exc.status  # the API's error shape

    @bp.before_request
    def own_size_limit() -> None:
        # not the catalogue's MAX_CONTENT_LENGTH; one byte over so that our own check, with its
        # reason, answers first (the server still stops reading past it)
        request.max_content_length = limit + 1

    @bp.post("/uploads")
    def post_upload() -> tuple[Response, int, dict[str, str]]:
        name = check_name(request.args.get("name", ""))
        if (request.content_length or 0) > limit:  # before touching the body
            raise UploadRefused(413, too_large(name, limit))
        received = receive(request.stream, uploads, name, contract, limit,
                           request.content_length, records)
        link = url_for("uploads.get_upload", sha256=received.sha256)
        body = {**dataclasses.asdict(received), "status": "received", "ledger": link}
        return jsonify(body), 201, {"Location": link}

    @bp.get("/uploads/<sha256>")
    def get_upload(sha256: str) -> Response:
        if not SHA256.match(sha256):
            raise UploadRefused(400, "give the file's sha256 as 64 lower-case hex digits")
        if (answer := ledger_answer(sha256)) is not None:
            return answer
        waiting = received_record(records, sha256)
        if waiting is None:
            raise UploadRefused(404, f"no file version with sha256 {sha256} in the ledger")
        received = {k: v for k, v in waiting.items() if k != "file"}
        if still_waiting(waiting, uploads):  # uploaded, not taken by the intake yet
            return jsonify({"sha256": sha256, "status": "received", "versions": [],
                            "detail": "in the drop zone; the intake has not taken it yet",
                            "received": received})
        # gone: the intake may have just taken it (it commits the ledger row, then removes it)
        if (answer := ledger_answer(sha256)) is not None:
            return answer
        return jsonify({"sha256": sha256, "status": LOST, "versions": [], "received": received,
                        "detail": f"{received.get('file_name')}: the uploaded file is no longer "
                                  "waiting and the ledger has no version with this sha256 (it "
                                  "was removed or replaced before the intake took it); upload "
                                  "it again"})

    def ledger_answer(sha256: str) -> Response | None:
        try:
            with ledger_engine().connect() as conn:
                rows = conn.execute(select(file_ledger).where(file_ledger.c.sha256 == sha256)
                                    .order_by(file_ledger.c.file_id)).mappings().all()
        except SQLAlchemyError:
            raise UploadRefused(503, "the warehouse's file ledger cannot be read right now") from None
        if not rows:
            return None
        versions = [{k: _plain(r[k]) for k in LEDGER_FIELDS} for r in rows]
        return jsonify({"sha256": sha256, "status": versions[-1]["status"], "versions": versions})

    return bp


def _plain(value: object) -> object:
    return value.isoformat() if hasattr(value, "isoformat") else value
