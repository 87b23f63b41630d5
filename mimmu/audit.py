"""An append-only, hash-chained audit log of registry decisions.

Each line is a JSON record with `previous_hash` (the hash of the line before) and
`hash` = SHA-256 of the record's canonical JSON without `hash`. Changing, removing or
reordering any line breaks the chain, which `verify_log` detects.

When `MIMMU_AUDIT_S3_URI=s3://BUCKET/PREFIX` is set, every append also uploads the
whole log to `PREFIX/<log file name>` in that bucket, one object under a stable key.
A rewrite of the local log that recomputes every hash keeps a valid chain, but it no
longer matches the copy, which `verify_copy` detects. With versioning on the bucket,
S3 also keeps every earlier state of the log.

Before it uploads, an append checks that the copy is missing or contains this log's
records so far (an equal or shorter log). So a second state folder that shares the
prefix gets an error instead of overwriting the first folder's copy. The upload is
conditional on the copy being the version that was checked (S3's If-Match, or
If-None-Match when there was none), so a folder that writes the copy between another
folder's check and upload makes that upload fail rather than be overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mimmu.errors import MimmuError
from mimmu.io import exclusive_lock, write_text_atomic
from mimmu.object_store import (
    ObjectChangedError,
    S3Uri,
    parse_s3_uri,
    read_bytes,
    read_object_if_present,
    upload_file,
)

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
COPY_URI_VARIABLE = "MIMMU_AUDIT_S3_URI"


def _record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def copy_uri() -> S3Uri | None:
    """Return the S3 prefix that receives copies of the audit log (MIMMU_AUDIT_S3_URI), or None when it is unset or empty."""
    value = os.environ.get(COPY_URI_VARIABLE)
    if not value:
        return None
    return parse_s3_uri(value, COPY_URI_VARIABLE)


def copy_object(path: Path, prefix: S3Uri) -> S3Uri:
    """Return the object that contains the copy of the log at `path` under `prefix`."""
    return prefix.child(Path(path).name)


def _parse_records(text: str, source: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise MimmuError(
                f"audit log {source!r} has invalid JSON at line {number} ({error.msg}); restore it from a copy"
            ) from error
    return records


def _read_log_text(path: Path) -> str | None:
    """Return the text of the audit log at `path`, or None when the file does not exist."""
    if not path.exists():
        return None
    if not path.is_file():
        raise MimmuError(f"audit log {str(path)!r} is not a file; move what is there and rerun")
    return path.read_text()


def read_log(path: Path) -> list[dict]:
    """Return the records of an audit log (empty when the file does not exist)."""
    path = Path(path)
    return _parse_records(_read_log_text(path) or "", str(path))


def append_record(path: Path, record: dict) -> dict:
    """Append `record` to the log at `path` atomically, copy the log to S3 when configured, and return the entry.

    Appends hold a lock on `<log>.lock`, so processes on one machine that append at the
    same time chain their records one after the other and none is lost. When the copy
    fails, the local log is put back as it was before the call and the error is raised,
    so a retry appends the record once.
    """
    path = Path(path)
    remote = copy_uri()  # an invalid value fails before the log is touched
    target = copy_object(path, remote) if remote is not None else None
    with exclusive_lock(path.with_name(path.name + ".lock")):
        return _append_locked(path, record, target)


def _check_copy_belongs(path: Path, local: bytes, target: S3Uri) -> str | None:
    """Return the ETag of the copy at `target` (None if there is none); raise unless it is `local` or an earlier state."""
    copied = read_object_if_present(target, COPY_URI_VARIABLE)
    if copied is None:
        return None
    if local.startswith(copied.body):
        return copied.etag
    raise MimmuError(
        f"audit log copy {str(target)!r} is not a copy of {str(path)!r}: it contains records this log lacks, "
        f"so another state folder writes to the same prefix or the copy was changed; set {COPY_URI_VARIABLE} "
        "to a prefix of this folder's own, and compare the two logs with `mimmu audit verify`"
    )


def _append_locked(path: Path, record: dict, target: S3Uri | None) -> dict:
    previous_text = _read_log_text(path)
    copy_etag = None
    if target is not None:
        copy_etag = _check_copy_belongs(path, (previous_text or "").encode(), target)
    records = _parse_records(previous_text or "", str(path))
    entry = {**record, "previous_hash": records[-1]["hash"] if records else GENESIS}
    entry["hash"] = _record_hash(entry)
    lines = [json.dumps(r, sort_keys=True) for r in [*records, entry]]
    write_text_atomic(path, "\n".join(lines) + "\n")
    if target is None:
        return entry
    try:
        upload_file(path, target, COPY_URI_VARIABLE, if_match=copy_etag, if_absent=copy_etag is None)
    except BaseException as error:
        if previous_text is None:
            path.unlink(missing_ok=True)
        else:
            write_text_atomic(path, previous_text)
        logger.warning("audit record %s withdrawn from %s because its copy to %s failed", entry["hash"], path, target)
        if isinstance(error, ObjectChangedError):
            raise MimmuError(
                f"audit log copy {str(target)!r} changed while {str(path)!r} appended a record, "
                "so another state folder writes to the same prefix; the record was withdrawn. "
                f"Set {COPY_URI_VARIABLE} to a prefix of this folder's own"
            ) from error
        raise
    return entry


def _verify_chain(records: list[dict], source: str) -> None:
    previous = GENESIS
    for number, record in enumerate(records, start=1):
        if record.get("previous_hash") != previous or record.get("hash") != _record_hash(record):
            raise MimmuError(f"audit log {source!r} was altered at line {number}; restore it from a copy")
        previous = record["hash"]


def verify_log(path: Path) -> int:
    """Check the chain of an audit log and return its number of records, or raise naming the first bad line."""
    records = read_log(path)
    _verify_chain(records, str(path))
    return len(records)


def verify_copy(path: Path, prefix: S3Uri) -> int:
    """Check that the S3 copy of the log at `path` has an intact chain and equals the local file, and return its record count."""
    path = Path(path)
    if not path.is_file():
        raise MimmuError(f"audit log {str(path)!r} not found; pass the local log whose copy to check")
    remote = copy_object(path, prefix)
    data = read_bytes(remote)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MimmuError(f"audit log copy {str(remote)!r} is not UTF-8 text; restore it from the local log") from error
    copied = _parse_records(text, str(remote))
    _verify_chain(copied, str(remote))
    if data == path.read_bytes():
        return len(copied)

    local = read_log(path)
    if copied == local[: len(copied)]:
        raise MimmuError(
            f"audit log copy {str(remote)!r} lacks the last {len(local) - len(copied)} of the {len(local)} local "
            "records, which happens when an upload did not finish; the next appended record uploads the whole log again"
        )
    local_head = local[-1]["hash"] if local else "none"
    copy_head = copied[-1]["hash"] if copied else "none"
    raise MimmuError(
        f"audit log {str(path)!r} ({len(local)} records, last hash {local_head}) differs from its copy "
        f"{str(remote)!r} ({len(copied)} records, last hash {copy_head}); one of them was rewritten, "
        "so compare both with earlier versions of the copy in the bucket"
    )
