"""S3 object storage through boto3: URIs, a client on the configured endpoint, verified uploads.

The endpoint is `MLFLOW_S3_ENDPOINT_URL` when it is set, because MLflow's S3 artifact
store reads the same variable, so mimmu and MLflow reach the same server. Without it
boto3 resolves the endpoint itself (`AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`,
then AWS S3). Credentials and region come from boto3's usual chain.
`MLFLOW_S3_IGNORE_TLS=true` turns off certificate checks, as it does in MLflow.

Every botocore failure raised here becomes a `MimmuError` whose message names the
endpoint or the URI and what to fix.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mimmu.digest import file_sha256
from mimmu.errors import MimmuError

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLE = "MLFLOW_S3_ENDPOINT_URL"
BOTO3_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
IGNORE_TLS_VARIABLE = "MLFLOW_S3_IGNORE_TLS"
SHA256_METADATA = "sha256"  # user metadata key; S3 returns it as x-amz-meta-sha256

# Limits from the Amazon S3 user guide: "Bucket naming rules" (general purpose buckets),
# object keys of at most 1024 bytes of UTF-8, and 5 GiB for an object uploaded in one PUT.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
MAX_KEY_BYTES = 1024
MAX_PUT_BYTES = 5 * 1024**3

_EXAMPLE = "s3://BUCKET/PREFIX, e.g. s3://mimmu-store/audit"
_NOT_FOUND_CODES = {"404", "NoSuchBucket", "NoSuchKey", "NotFound"}
_MISSING_OBJECT_CODES = _NOT_FOUND_CODES - {"NoSuchBucket"}
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
# Codes of a conditional PUT whose condition failed: 412 when the ETag differs or the object
# exists, 409 when a conflicting write to the key ran at the same time (Amazon S3 user guide,
# "How to prevent object overwrites with conditional writes", and the PutObject reference).
_CONDITION_FAILED_CODES = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}


class ObjectChangedError(MimmuError):
    """A conditional upload found the object changed, created or being written since it was read."""


@dataclass(frozen=True)
class StoredObject:
    """The content of an S3 object and its ETag, the version tag a conditional upload compares against."""

    body: bytes
    etag: str


@dataclass(frozen=True)
class S3Uri:
    """A bucket and an object key (or key prefix) without leading or trailing slashes; the key may be empty."""

    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def child(self, name: str) -> S3Uri:
        """Return the URI of `name` under this prefix."""
        return S3Uri(self.bucket, f"{self.key}/{name}" if self.key else name)


def looks_like_s3(text: str) -> bool:
    """Return whether `text` names an S3 location (s3:, or Hadoop's s3a: and s3n:), valid or not."""
    return text.strip().lower().startswith(("s3:", "s3a:", "s3n:"))


def _bucket_problem(bucket: str) -> str | None:
    if not bucket:
        return "it has no bucket name"
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket or _IPV4_ADDRESS.fullmatch(bucket):
        return (
            f"bucket name {bucket!r} is invalid: S3 bucket names are 3 to 63 lowercase letters, digits, dots "
            "and hyphens, start and end with a letter or digit, and are not IP addresses"
        )
    return None


def _key_problem(key: str) -> str | None:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"the prefix is longer than the {MAX_KEY_BYTES} bytes S3 allows for a key"
    if any(not character.isprintable() for character in key):
        return "the prefix contains control characters"
    if "?" in key or "#" in key:
        return "the prefix contains '?' or '#', which URI parsers (MLflow's too) read as a query or fragment"
    segments = key.split("/")
    if "" in segments:
        return "the prefix has an empty segment ('//')"
    if "." in segments or ".." in segments:
        return "the prefix has a '.' or '..' segment, which tools that copy keys to files resolve as folders"
    return None


def parse_s3_uri(text: str, setting: str = "S3 URI") -> S3Uri:
    """Parse `s3://bucket/prefix` into an S3Uri, or raise a MimmuError that names `setting`, the value and the fix.

    One trailing slash is accepted and dropped, since `s3://bucket/prefix/` names the same prefix.
    """
    if not isinstance(text, str) or not text.strip():
        raise MimmuError(f"{setting} is empty; set it to {_EXAMPLE}")
    reason = None
    if text != text.strip():
        reason = "it has leading or trailing whitespace"
    elif not text.startswith("s3://"):
        reason = "it does not start with s3://"
    if reason is None:
        bucket, _, key = text[len("s3://") :].partition("/")
        key = key[:-1] if key.endswith("/") else key
        reason = _bucket_problem(bucket) or (_key_problem(key) if key else None)
    if reason is not None:
        raise MimmuError(f"{setting}={text!r} is not a valid S3 URI: {reason}; set it to {_EXAMPLE}")
    return S3Uri(bucket, key)


def endpoint_setting() -> str:
    """Return the variable that sets the S3 endpoint, or a description of boto3's default."""
    for variable in (ENDPOINT_VARIABLE, *BOTO3_ENDPOINT_VARIABLES):
        if os.environ.get(variable):
            return variable
    return "the AWS default endpoint"


def s3_client():
    """Return a boto3 S3 client on the configured endpoint, from a fresh session so that it reads the current environment."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get(ENDPOINT_VARIABLE) or None
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MimmuError(
                f"{ENDPOINT_VARIABLE}={endpoint!r} is not an http(s) URL; set it like http://127.0.0.1:9000"
            )
    verify = False if os.environ.get(IGNORE_TLS_VARIABLE, "").lower() == "true" else None
    # Few, short retries: an unreachable store should fail the flow's first check in seconds.
    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3})
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint, verify=verify, config=config)
    except ValueError as error:  # botocore's message for an endpoint it cannot use
        raise MimmuError(f"invalid S3 endpoint from {endpoint_setting()}: {error}") from error


@contextlib.contextmanager
def translated_errors(client, action: str, uri: S3Uri, setting: str | None = None) -> Iterator[None]:
    """Turn botocore errors raised inside the block into one-line MimmuErrors.

    `action` names the attempted operation ("upload to"), and `setting` names the variable
    that contains `uri`, so a missing bucket points at the value to fix. A 404 on a URI without
    a key reads as a missing bucket, and on a URI with a key as a missing object.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    endpoint = client.meta.endpoint_url
    try:
        yield
    except BotoConnectionError as error:
        raise MimmuError(
            f"object store unreachable at {endpoint}: {error}; check {endpoint_setting()} and that the server is running"
        ) from error
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise MimmuError(
            f"no usable AWS credentials for the object store at {endpoint} ({error}); "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        ) from error
    except ClientError as error:
        raise _client_error(error, action, uri, endpoint, setting) from error
    except BotoCoreError as error:
        raise MimmuError(f"{action} {uri} failed at {endpoint}: {error}") from error


def _error_code(error) -> str:
    """Return the S3 error code of a botocore ClientError ("NoSuchKey", "412", ...)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _client_error(error, action: str, uri: S3Uri, endpoint: str, setting: str | None) -> MimmuError:
    details = error.response.get("Error", {})
    code = _error_code(error)
    fix_uri = f"fix {setting}" if setting else "fix the URI"
    if code in _NOT_FOUND_CODES and (code == "NoSuchBucket" or not uri.key):
        return MimmuError(f"bucket {uri.bucket!r} not found at {endpoint}; create it or {fix_uri}")
    if code in _NOT_FOUND_CODES:
        return MimmuError(f"object {uri} not found at {endpoint}; {fix_uri} or write the object first")
    if code in _DENIED_CODES:
        return MimmuError(
            f"access to {uri} denied at {endpoint} ({code}); "
            "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy"
        )
    message = details.get("Message") or "no message"
    return MimmuError(f"{action} {uri} failed at {endpoint}: {code}: {message}")


def check_bucket(uri: S3Uri, setting: str | None = None, client=None) -> None:
    """Raise MimmuError unless the bucket of `uri` exists and the credentials may use it."""
    client = client or s3_client()
    # The bucket alone, so that a 404 reads as a missing bucket rather than a missing object.
    with translated_errors(client, "check bucket", S3Uri(uri.bucket), setting):
        client.head_bucket(Bucket=uri.bucket)
    logger.info("bucket %s is reachable at %s", uri.bucket, client.meta.endpoint_url)


def upload_file(
    path: Path,
    uri: S3Uri,
    setting: str | None = None,
    client=None,
    *,
    if_match: str | None = None,
    if_absent: bool = False,
) -> str:
    """Upload a file to the object `uri` in one PUT, verify the stored object, and return the file's SHA-256.

    One PUT is atomic on S3: readers see the previous object or the new one, never a
    part. The PUT carries the SHA-256, which S3 checks against the body it received,
    and a HEAD afterwards confirms the stored size and `sha256` metadata. `setting` names
    the variable that contains `uri` in error messages.

    `if_match` (an ETag from `read_object_if_present`) makes the PUT conditional on the
    object still being that version, and `if_absent` on the object not existing yet. When
    the condition fails, S3 leaves the object as it is and ObjectChangedError is raised, so
    of two writers that read the same version, the second to upload cannot overwrite the first.
    """
    if if_match is not None and if_absent:
        raise MimmuError("invalid upload conditions: pass if_match or if_absent, not both")
    path = Path(path)
    if not path.is_file():
        raise MimmuError(f"cannot upload {str(path)!r}: it is not a file")
    if not uri.key:
        raise MimmuError(f"cannot upload to {uri}: the URI names a bucket, not an object key")
    size = path.stat().st_size
    if size > MAX_PUT_BYTES:
        raise MimmuError(f"cannot upload {str(path)!r} ({size} bytes): one S3 PUT takes at most {MAX_PUT_BYTES} bytes")
    sha256 = file_sha256(path)
    client = client or s3_client()
    conditions = {}
    if if_match is not None:
        conditions["IfMatch"] = if_match
    elif if_absent:
        conditions["IfNoneMatch"] = "*"
    try:
        with translated_errors(client, "upload to", uri, setting), path.open("rb") as body:
            _put_object(client, uri, body, sha256, conditions)
    except ObjectChangedError:
        # botocore resends a PUT whose response was lost, and the resent condition then fails
        # against the object the first attempt stored. That object is this file: accept it.
        if _stored_sha256(client, uri) != sha256:
            raise
        logger.info(
            "retried conditional upload to %s failed its condition on this file, stored by the first attempt", uri
        )
    with translated_errors(client, "check upload to", uri):
        stored = client.head_object(Bucket=uri.bucket, Key=uri.key)
    stored_sha256 = stored.get("Metadata", {}).get(SHA256_METADATA)
    if stored["ContentLength"] != size or stored_sha256 != sha256:
        raise MimmuError(
            f"upload of {str(path)!r} to {uri} failed verification: stored {stored['ContentLength']} bytes "
            f"with sha256 {stored_sha256}, expected {size} bytes with sha256 {sha256}; retry the upload"
        )
    logger.info("uploaded %s to %s (%d bytes, sha256 %s)", path, uri, size, sha256)
    return sha256


def _stored_sha256(client, uri: S3Uri) -> str | None:
    """Return the `sha256` metadata of the object `uri`, or None when it has none or does not exist."""
    from botocore.exceptions import ClientError

    with translated_errors(client, "check", uri):
        try:
            return client.head_object(Bucket=uri.bucket, Key=uri.key).get("Metadata", {}).get(SHA256_METADATA)
        except ClientError as error:
            if _error_code(error) in _MISSING_OBJECT_CODES:
                return None
            raise


def _put_object(client, uri: S3Uri, body, sha256: str, conditions: dict[str, str]) -> None:
    """PUT `body` to `uri` with its SHA-256 checksum and metadata; raise ObjectChangedError when `conditions` fail."""
    from botocore.exceptions import ClientError

    try:
        client.put_object(
            Bucket=uri.bucket,
            Key=uri.key,
            Body=body,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
            Metadata={SHA256_METADATA: sha256},
            **conditions,
        )
    except ClientError as error:
        code = _error_code(error)
        # With If-Match, S3 returns 404 NoSuchKey when the object was deleted since it was read.
        deleted = "IfMatch" in conditions and code in _MISSING_OBJECT_CODES
        if deleted or (conditions and code in _CONDITION_FAILED_CODES):
            expected = f"version {conditions['IfMatch']}" if "IfMatch" in conditions else "no object"
            raise ObjectChangedError(
                f"{uri} changed since it was read ({code}): expected {expected}. Another writer uses "
                "the same object, so nothing was overwritten"
            ) from error
        raise


def read_object_if_present(uri: S3Uri, setting: str | None = None, client=None) -> StoredObject | None:
    """Return the content and ETag of the object `uri`, or None when its bucket exists but the object does not."""
    from botocore.exceptions import ClientError

    client = client or s3_client()
    with translated_errors(client, "read", uri, setting):
        try:
            response = client.get_object(Bucket=uri.bucket, Key=uri.key)
            return StoredObject(body=response["Body"].read(), etag=response["ETag"])
        except ClientError as error:
            if _error_code(error) in _MISSING_OBJECT_CODES:
                return None
            raise


def read_bytes(uri: S3Uri, client=None) -> bytes:
    """Return the content of the object `uri`."""
    client = client or s3_client()
    with translated_errors(client, "read", uri):
        return client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
