"""The upload stage (flask-data-pipes' first stage): a file received over HTTP becomes a drop.

The body is streamed to a hidden temporary name in the uploads folder (``<DATA_DIR>/uploads``,
written only by this service, never by folder senders; ``.upload-<id>.partial``: the intake leaves
hidden and temp names alone), hashed and checked on the way, then given its real name with a link,
which fails rather than replace an upload of that name still waiting to land. The intake takes the
uploads folder with the drop zone and the folder's rules; the file keeps its own name as the
ledger's file name, so a sender's file of the same name in ``incoming/`` is another version of
that name, never a replacement of the upload's bytes.

Checks before it becomes a drop, each answered with a reason that names the file and the rule,
never a data cell: a plain ``*.csv`` name; at most ``max_bytes``; exactly the declared length
(a body cut short, by a client that disconnected or a chunked body without its end, is a
truncated file: loading it would load wrong numbers); UTF-8 text without NUL bytes; a header the
schema contract maps (the required columns, comma-separated).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sales_platform.core.intake import name_kind
from sales_platform.core.landing import FileRejected, header_problem, read_header
from sales_platform.core.schema import SchemaContract, SchemaError

BLOCK = 1 << 20
NUL = b"\x00"
MAX_NAME_CHARS = 200
DEFAULT_MAX_UPLOAD_BYTES = 100 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UploadRefused(ValueError):
    """The upload is not taken; ``status`` is the HTTP answer (400, 409, 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Received:
    file_name: str
    sha256: str
    size_bytes: int
    received_at: str


def check_name(name: str) -> str:
    """A plain ``*.csv`` name the drop zone takes (no folders, not hidden, not a temp name)."""
    if not name or len(name) > MAX_NAME_CHARS or any(c in name for c in "/\\\x00") \
            or name in (".", ".."):
        raise UploadRefused(400, f"file name must be a plain name of 1-{MAX_NAME_CHARS} characters "
                                 "without folders, e.g. ?name=sales_2024-06-01.csv")
    kind, reason = name_kind(name)
    if kind != "csv":
        raise UploadRefused(400, reason or f"{name}: a hidden or temporary name is not a drop; "
                                           "give the file's final *.csv name")
    return name


def receive(stream: BinaryIO, incoming: Path, name: str, contract: SchemaContract,
            max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, declared_size: int | None = None,
            record_dir: Path | None = None) -> Received:
    """Stream an upload into ``incoming`` (the uploads folder) as ``name``; UploadRefused (nothing
    left) if refused."""
    check_name(name)
    if declared_size is not None and declared_size > max_bytes:
        raise UploadRefused(413, too_large(name, max_bytes))
    incoming.mkdir(parents=True, exist_ok=True)
    temp = incoming / f".upload-{uuid.uuid4().hex}.partial"
    try:
        sha, size = _stream_checked(stream, temp, name, max_bytes, declared_size)
        _check_header(temp, name, contract)
        target = incoming / name
        try:
            os.link(temp, target)  # never replaces a drop of the same name that has not landed
        except FileExistsError:
            raise UploadRefused(409, f"{name}: an upload of this name is waiting in the drop "
                                     "zone; upload again once it has landed") from None
        published = os.lstat(target)
    finally:
        temp.unlink(missing_ok=True)
    received = Received(name, sha, size, datetime.now(UTC).isoformat(timespec="seconds"))
    if record_dir is not None:
        _remember(record_dir, received, (published.st_ino, published.st_dev))
    return received


def too_large(name: str, max_bytes: int) -> str:
    return f"{name}: larger than the {max_bytes} bytes an upload may have " \
           "(SALES_PLATFORM_UPLOAD_MAX_BYTES); drop larger files into the drop zone directly"


def _read(stream: BinaryIO, name: str, size: int) -> bytes:
    try:
        return stream.read(BLOCK)
    except UploadRefused:
        raise
    except Exception:  # whatever the server raises (a disconnect, a broken chunk, a timeout)
        raise UploadRefused(400, f"{name}: the body ended after {size} bytes, before its end "
                                 "(client disconnected, timed out or sent a broken chunked body); "
                                 "nothing was kept, upload the file again") from None


def _stream_checked(stream: BinaryIO, temp: Path, name: str, max_bytes: int,
                    declared: int | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(temp, "xb") as out:
        while block := _read(stream, name, size):
            if declared is not None and size + len(block) > declared:
                raise UploadRefused(400, f"{name}: the body is longer than its declared "
                                         f"Content-Length of {declared} bytes")
            if size + len(block) > max_bytes:
                raise UploadRefused(413, too_large(name, max_bytes))
            nul = block.find(NUL)
            if nul >= 0:
                raise UploadRefused(400, f"{name}: binary content (NUL byte at byte {size + nul}), "
                                         "not CSV text")
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise UploadRefused(400, f"{name}: not UTF-8 text ({exc.reason} at byte "
                                         f"{size + exc.start})") from None
            digest.update(block)
            out.write(block)
            size += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise UploadRefused(400, f"{name}: not UTF-8 text ({exc.reason} at the end)") from None
        if declared is not None and size != declared:
            raise UploadRefused(400, f"{name}: the body ended after {size} of its declared "
                                     f"{declared} bytes (Content-Length); a truncated file is not "
                                     "taken, upload it again")
        out.flush()
        os.fsync(out.fileno())
    if size == 0:
        raise UploadRefused(400, f"{name}: empty body; send the CSV file's bytes")
    return digest.hexdigest(), size


def _check_header(path: Path, name: str, contract: SchemaContract) -> None:
    """The landing's own header rules: their messages count and position cells, never quote data."""
    try:
        header = read_header(path, name)
    except FileRejected as exc:
        raise UploadRefused(400, str(exc)) from None
    try:
        contract.map_header(header, name)
    except SchemaError:
        raise UploadRefused(400, header_problem(name, header, contract)) from None


def _remember(record_dir: Path, received: Received, published: tuple[int, int]) -> None:
    """What was received, by sha256, until the ledger knows it (a GET in between says so), with
    the published file's identity (inode, device): whether it is still the one waiting."""
    record_dir.mkdir(parents=True, exist_ok=True)
    target = record_dir / f"{received.sha256}.json"
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    temp.write_text(json.dumps({**asdict(received), "file": list(published)}))
    os.replace(temp, target)


def received_record(record_dir: Path, sha256: str) -> dict | None:
    try:
        return json.loads((record_dir / f"{sha256}.json").read_text())
    except (OSError, ValueError):
        return None


def still_waiting(record: dict, uploads: Path) -> bool:
    """Whether the upload a record describes is still the file waiting under its name (not taken,
    not removed, not replaced)."""
    try:
        found = os.lstat(uploads / record["file_name"])
    except (OSError, KeyError, TypeError):
        return False
    return [found.st_ino, found.st_dev] == record.get("file")
