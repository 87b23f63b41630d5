"""S3 through boto3 against a moto S3 server on loopback: URIs, uploads, audit-log copies, MLflow artifacts."""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from mimmu.audit import append_record, copy_object, verify_copy, verify_log
from mimmu.errors import MimmuError
from mimmu.object_store import (
    ObjectChangedError,
    S3Uri,
    check_bucket,
    parse_s3_uri,
    read_bytes,
    read_object_if_present,
    s3_client,
    upload_file,
)

# Variables that could point boto3 or mimmu at something other than the loopback server.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_S3_IGNORE_TLS",
    "MIMMU_ARTIFACT_URI",
    "MIMMU_AUDIT_S3_URI",
)


@pytest.fixture(autouse=True)
def offline_aws(tmp_path, monkeypatch):
    """Fake credentials, no metadata service and no AWS config files, so nothing leaves loopback."""
    for variable in _CLEARED:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-aws-credentials"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "missing-boto-config"))
    monkeypatch.setenv("MLFLOW_ENABLE_TELEMETRY", "false")
    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def s3_endpoint():
    """The URL of a moto S3 server on 127.0.0.1 at a free port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """MLFLOW_S3_ENDPOINT_URL set to the server, a new bucket, and a boto3 client for checking what was stored."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_endpoint)
    client = s3_client()
    bucket = f"mimmu-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return SimpleNamespace(endpoint=s3_endpoint, bucket=bucket, client=client)


def _closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stored(s3, key: str) -> bytes:
    return s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()


# URIs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bucket", S3Uri("bucket", "")),
        ("s3://bucket/", S3Uri("bucket", "")),
        ("s3://my.bucket-1/audit", S3Uri("my.bucket-1", "audit")),
        ("s3://my.bucket-1/a/b/", S3Uri("my.bucket-1", "a/b")),
    ],
)
def test_parse_s3_uri_valid(text, expected):
    assert parse_s3_uri(text) == expected


def test_s3_uri_string_and_child():
    assert str(S3Uri("bucket", "")) == "s3://bucket"
    assert str(S3Uri("bucket", "a/b")) == "s3://bucket/a/b"
    assert S3Uri("bucket", "").child("log.jsonl") == S3Uri("bucket", "log.jsonl")
    assert S3Uri("bucket", "a").child("log.jsonl") == S3Uri("bucket", "a/log.jsonl")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (" s3://bucket/a", "leading or trailing whitespace"),
        ("s3:/bucket/a", "does not start with s3://"),
        ("S3://bucket/a", "does not start with s3://"),
        ("s3a://bucket/a", "does not start with s3://"),
        ("https://bucket/a", "does not start with s3://"),
        ("s3://", "no bucket name"),
        ("s3:///a", "no bucket name"),
        ("s3://My_Bucket/a", "bucket name 'My_Bucket' is invalid"),
        ("s3://ab/a", "bucket name 'ab' is invalid"),
        ("s3://a..b/a", "bucket name 'a..b' is invalid"),
        ("s3://192.168.1.1/a", "bucket name '192.168.1.1' is invalid"),
        ("s3://bucket/a//b", "empty segment"),
        ("s3://bucket/a/../b", "'..' segment"),
        ("s3://bucket/a?versionId=1", "query or fragment"),
        ("s3://bucket/a\nb", "control characters"),
        ("s3://bucket/" + "k" * 1025, "longer than the 1024 bytes"),
    ],
)
def test_parse_s3_uri_invalid(text, reason):
    with pytest.raises(MimmuError) as raised:
        parse_s3_uri(text, "MIMMU_AUDIT_S3_URI")
    message = str(raised.value)
    assert reason in message
    assert message.startswith("MIMMU_AUDIT_S3_URI")
    assert "set it to s3://BUCKET/PREFIX" in message


def test_artifact_location_checks_s3_uri(monkeypatch):
    from mimmu.registry import artifact_location, artifact_s3_uri

    monkeypatch.setenv("MIMMU_ARTIFACT_URI", "s3://Bad_Bucket/mlflow")
    with pytest.raises(MimmuError, match="MIMMU_ARTIFACT_URI='s3://Bad_Bucket/mlflow' is not a valid S3 URI"):
        artifact_location()
    monkeypatch.setenv("MIMMU_ARTIFACT_URI", "s3a://bucket/mlflow")
    with pytest.raises(MimmuError, match="does not start with s3://"):
        artifact_location()
    monkeypatch.setenv("MIMMU_ARTIFACT_URI", "s3://good-bucket/mlflow/")
    assert artifact_location() == "s3://good-bucket/mlflow"
    assert artifact_s3_uri() == S3Uri("good-bucket", "mlflow")
    monkeypatch.setenv("MIMMU_ARTIFACT_URI", "file:///srv/mlartifacts")
    assert artifact_location() == "file:///srv/mlartifacts"
    assert artifact_s3_uri() is None


def test_endpoint_url_without_scheme_rejected(monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "127.0.0.1:9000")
    with pytest.raises(MimmuError, match="MLFLOW_S3_ENDPOINT_URL='127.0.0.1:9000' is not an http\\(s\\) URL"):
        s3_client()


# Uploads and errors


def test_upload_and_read_back(s3, tmp_path):
    source = tmp_path / "record.json"
    source.write_bytes(b'{"decision": "promote"}\n')
    target = S3Uri(s3.bucket, "records/record.json")

    digest = upload_file(source, target)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert read_bytes(target) == source.read_bytes()
    head = s3.client.head_object(Bucket=s3.bucket, Key="records/record.json")
    assert head["Metadata"]["sha256"] == digest
    assert head["ContentLength"] == source.stat().st_size

    source.write_bytes(b'{"decision": "reject"}\n')
    upload_file(source, target)
    assert read_bytes(target) == b'{"decision": "reject"}\n'


def test_upload_rejects_bucket_uri_and_missing_file(s3, tmp_path):
    source = tmp_path / "record.json"
    source.write_text("{}")
    with pytest.raises(MimmuError, match="names a bucket, not an object key"):
        upload_file(source, S3Uri(s3.bucket))
    with pytest.raises(MimmuError, match="it is not a file"):
        upload_file(tmp_path / "missing.json", S3Uri(s3.bucket, "missing.json"))


def test_conditional_upload_keeps_a_changed_object(s3, tmp_path):
    source = tmp_path / "log.jsonl"
    source.write_bytes(b"first\n")
    target = S3Uri(s3.bucket, "logs/log.jsonl")
    assert read_object_if_present(target) is None

    upload_file(source, target, if_absent=True)
    first = read_object_if_present(target)
    assert first.body == b"first\n"
    source.write_bytes(b"first\nmine\n")
    with pytest.raises(ObjectChangedError, match="expected no object. .*nothing was overwritten"):
        upload_file(source, target, if_absent=True)

    s3.client.put_object(Bucket=s3.bucket, Key=target.key, Body=b"first\ntheirs\n")
    with pytest.raises(ObjectChangedError, match=f"expected version {first.etag}"):
        upload_file(source, target, if_match=first.etag)
    assert _stored(s3, target.key) == b"first\ntheirs\n"

    upload_file(source, target, if_match=read_object_if_present(target).etag)
    assert _stored(s3, target.key) == b"first\nmine\n"

    latest = read_object_if_present(target).etag
    s3.client.delete_object(Bucket=s3.bucket, Key=target.key)
    with pytest.raises(ObjectChangedError, match="NoSuchKey"):
        upload_file(source, target, if_match=latest)
    assert read_object_if_present(target) is None
    with pytest.raises(MimmuError, match="invalid upload conditions: pass if_match or if_absent, not both"):
        upload_file(source, target, if_match=first.etag, if_absent=True)


def test_conditional_upload_retried_after_success(s3, tmp_path):
    """botocore resends a conditional PUT that already succeeded: the upload still succeeds."""
    source = tmp_path / "log.jsonl"
    source.write_bytes(b"first\n")
    target = S3Uri(s3.bucket, "logs/retried.jsonl")
    client = s3_client()
    resent = []

    def resend_first_success(response=None, **_):
        if response is not None and response[1]["ResponseMetadata"]["HTTPStatusCode"] == 200 and not resent:
            resent.append(True)
            return 0  # retry at once, as after a lost response

    client.meta.events.register_first("needs-retry.s3.PutObject", resend_first_success)
    upload_file(source, target, client=client, if_absent=True)
    assert resent == [True]
    assert _stored(s3, target.key) == b"first\n"

    source.write_bytes(b"first\nsecond\n")
    resent.clear()
    upload_file(source, target, client=client, if_match=read_object_if_present(target).etag)
    assert resent == [True]
    assert _stored(s3, target.key) == b"first\nsecond\n"


def test_endpoint_from_aws_endpoint_url_s3(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    assert s3_client().meta.endpoint_url == s3.endpoint
    source = tmp_path / "a.txt"
    source.write_text("a")
    upload_file(source, S3Uri(s3.bucket, "a.txt"))
    assert _stored(s3, "a.txt") == b"a"


def test_unreachable_endpoint_clear_error(monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)
    with pytest.raises(MimmuError) as raised:
        check_bucket(S3Uri("mimmu-store", "audit"), "MIMMU_AUDIT_S3_URI")
    message = str(raised.value)
    assert message.startswith(f"object store unreachable at {endpoint}")
    assert "check MLFLOW_S3_ENDPOINT_URL" in message
    assert "\n" not in message


def test_missing_bucket_clear_error(s3, tmp_path):
    missing = S3Uri(f"{s3.bucket}-missing", "audit")
    with pytest.raises(MimmuError) as raised:
        check_bucket(missing, "MIMMU_AUDIT_S3_URI")
    assert str(raised.value) == (
        f"bucket '{missing.bucket}' not found at {s3.endpoint}; create it or fix MIMMU_AUDIT_S3_URI"
    )

    source = tmp_path / "a.txt"
    source.write_text("a")
    with pytest.raises(MimmuError, match=f"bucket '{missing.bucket}' not found"):
        upload_file(source, missing.child("a.txt"))
    with pytest.raises(MimmuError, match=f"object s3://{s3.bucket}/absent.txt not found"):
        read_bytes(S3Uri(s3.bucket, "absent.txt"))


def test_missing_credentials_clear_error(s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(
        MimmuError, match="no usable AWS credentials .* set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ):
        check_bucket(S3Uri(s3.bucket))


def test_check_object_stores_before_compute(s3, monkeypatch):
    from mimmu.lifecycle import check_object_stores

    assert check_object_stores() == []
    monkeypatch.setenv("MIMMU_ARTIFACT_URI", f"s3://{s3.bucket}/mlflow")
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/audit")
    assert check_object_stores() == [f"s3://{s3.bucket}/mlflow", f"s3://{s3.bucket}/audit"]
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}-missing/audit")
    with pytest.raises(MimmuError, match="not found .*; create it or fix MIMMU_AUDIT_S3_URI"):
        check_object_stores()


# Audit-log copies


def _append_two(log):
    append_record(log, {"decision": "reject", "version": "1"})
    append_record(log, {"decision": "promote", "version": "2"})


def test_audit_append_copies_log(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/audit")
    log = tmp_path / "audit" / "decisions.jsonl"

    append_record(log, {"decision": "reject", "version": "1"})
    assert _stored(s3, "audit/decisions.jsonl") == log.read_bytes()
    append_record(log, {"decision": "promote", "version": "2"})
    assert _stored(s3, "audit/decisions.jsonl") == log.read_bytes()
    assert verify_log(log) == 2
    assert verify_copy(log, S3Uri(s3.bucket, "audit")) == 2


def test_audit_tampered_copy_detected(s3, tmp_path, monkeypatch):
    prefix = S3Uri(s3.bucket, "audit")
    log = tmp_path / "decisions.jsonl"
    forged = tmp_path / "forged" / "decisions.jsonl"
    _append_two(forged)  # a valid chain with other content, written before copies are switched on
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", str(prefix))
    append_record(log, {"decision": "reject", "version": "1"})
    append_record(log, {"decision": "promote", "version": "7"})
    key = copy_object(log, prefix).key

    first, second = log.read_text().splitlines()
    edited = json.loads(first)
    edited["decision"] = "promote"
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=f"{json.dumps(edited, sort_keys=True)}\n{second}\n".encode())
    with pytest.raises(MimmuError, match=f"audit log 's3://{s3.bucket}/audit/decisions.jsonl' was altered at line 1"):
        verify_copy(log, prefix)

    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=forged.read_bytes())
    with pytest.raises(MimmuError, match="differs from its copy"):
        verify_copy(log, prefix)

    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=f"{first}\n".encode())
    with pytest.raises(MimmuError, match="lacks the last 1 of the 2 local records"):
        verify_copy(log, prefix)

    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"not json\n")
    with pytest.raises(MimmuError, match="has invalid JSON at line 1"):
        verify_copy(log, prefix)

    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=log.read_bytes())
    assert verify_copy(log, prefix) == 2


def test_audit_verify_command_checks_copy(s3, tmp_path, monkeypatch, capsys):
    from mimmu.cli import main

    log = tmp_path / "decisions.jsonl"
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/audit")
    _append_two(log)

    assert main(["audit", "verify", "--log", str(log)]) == 0
    printed = capsys.readouterr().out
    assert "2 records, chain intact" in printed
    assert f"s3://{s3.bucket}/audit/decisions.jsonl: identical copy" in printed

    s3.client.put_object(Bucket=s3.bucket, Key="audit/decisions.jsonl", Body=log.read_text().splitlines()[0].encode())
    assert main(["audit", "verify", "--log", str(log)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mimmu: error: audit log copy")
    assert error.count("\n") == 1
    assert main(["audit", "verify", "--log", str(log), "--local-only"]) == 0

    monkeypatch.delenv("MIMMU_AUDIT_S3_URI")
    assert main(["audit", "verify", "--log", str(log), "--s3", f"s3://{s3.bucket}/audit"]) == 2
    assert main(["audit", "verify", "--log", str(log), "--s3", "s3://Bad/audit"]) == 2
    assert "--s3='s3://Bad/audit' is not a valid S3 URI" in capsys.readouterr().err


def test_audit_verify_command_unreachable_store(tmp_path, monkeypatch, capsys):
    from mimmu.cli import main

    log = tmp_path / "decisions.jsonl"
    _append_two(log)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", "s3://mimmu-store/audit")

    assert main(["audit", "verify", "--log", str(log)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"mimmu: error: object store unreachable at {endpoint}")
    assert error.count("\n") == 1


def test_audit_copy_failure_withdraws_record(s3, tmp_path, monkeypatch):
    log = tmp_path / "decisions.jsonl"
    append_record(log, {"decision": "reject", "version": "1"})
    before = log.read_bytes()
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}-missing/audit")

    with pytest.raises(MimmuError, match="not found .*; create it or fix MIMMU_AUDIT_S3_URI"):
        append_record(log, {"decision": "promote", "version": "2"})
    assert log.read_bytes() == before

    fresh = tmp_path / "fresh" / "decisions.jsonl"
    with pytest.raises(MimmuError, match="not found"):
        append_record(fresh, {"decision": "promote", "version": "2"})
    assert not fresh.exists()

    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", "s3://Bad/audit")
    with pytest.raises(MimmuError, match="MIMMU_AUDIT_S3_URI='s3://Bad/audit' is not a valid S3 URI"):
        append_record(log, {"decision": "promote", "version": "2"})
    assert log.read_bytes() == before


def test_audit_shared_prefix_rejected(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/shared")
    first = tmp_path / "first" / "decisions.jsonl"
    second = tmp_path / "second" / "decisions.jsonl"
    _append_two(first)

    with pytest.raises(MimmuError, match="is not a copy of .*another state folder writes to the same prefix"):
        append_record(second, {"decision": "promote", "version": "9"})
    assert not second.exists()
    assert _stored(s3, "shared/decisions.jsonl") == first.read_bytes()


def test_audit_copy_written_during_append_rejected(s3, tmp_path, monkeypatch):
    """Another folder writes the copy after this append checked it and before it uploads."""
    import boto3

    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/shared")
    mine = tmp_path / "mine" / "decisions.jsonl"
    theirs = tmp_path / "theirs" / "decisions.jsonl"
    _append_two(mine)
    before = mine.read_bytes()
    monkeypatch.delenv("MIMMU_AUDIT_S3_URI")
    append_record(
        theirs, {"decision": "reject", "version": "8"}
    )  # written locally only, and uploaded by the race below
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/shared")

    def write_theirs(**_):
        s3.client.put_object(Bucket=s3.bucket, Key="shared/decisions.jsonl", Body=theirs.read_bytes())

    open_client = boto3.session.Session.client

    def client_that_races(self, *args, **kwargs):
        client = open_client(self, *args, **kwargs)
        client.meta.events.register("after-call.s3.GetObject", write_theirs)
        return client

    monkeypatch.setattr(boto3.session.Session, "client", client_that_races)
    with pytest.raises(MimmuError, match="changed while .* appended a record.*withdrawn"):
        append_record(mine, {"decision": "promote", "version": "3"})
    assert mine.read_bytes() == before
    assert _stored(s3, "shared/decisions.jsonl") == theirs.read_bytes()

    fresh = tmp_path / "fresh" / "decisions.jsonl"
    s3.client.delete_object(Bucket=s3.bucket, Key="shared/decisions.jsonl")
    with pytest.raises(MimmuError, match="changed while"):
        append_record(fresh, {"decision": "promote", "version": "1"})
    assert not fresh.exists()
    assert _stored(s3, "shared/decisions.jsonl") == theirs.read_bytes()


def test_audit_copy_behind_catches_up(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/audit")
    log = tmp_path / "decisions.jsonl"
    _append_two(log)
    first_line = log.read_text().splitlines()[0] + "\n"
    s3.client.put_object(Bucket=s3.bucket, Key="audit/decisions.jsonl", Body=first_line.encode())

    append_record(log, {"decision": "promote", "version": "3"})
    assert _stored(s3, "audit/decisions.jsonl") == log.read_bytes()
    assert verify_copy(log, S3Uri(s3.bucket, "audit")) == 3


def test_audit_copies_switched_on_later(s3, tmp_path, monkeypatch):
    log = tmp_path / "decisions.jsonl"
    _append_two(log)
    monkeypatch.setenv("MIMMU_AUDIT_S3_URI", f"s3://{s3.bucket}/later")
    append_record(log, {"decision": "promote", "version": "3"})
    assert _stored(s3, "later/decisions.jsonl") == log.read_bytes()


# MLflow artifacts


def test_mlflow_artifacts_on_s3(s3, tmp_path, monkeypatch):
    import mlflow

    from mimmu import registry

    monkeypatch.setenv("MIMMU_ARTIFACT_URI", f"s3://{s3.bucket}/mlflow")
    run_id = registry.start_run("s3-artifacts", "s3-run", {"concept": "star"})
    client = registry.client()
    experiment = client.get_experiment_by_name("s3-artifacts")
    assert experiment.artifact_location == f"s3://{s3.bucket}/mlflow"

    source = tmp_path / "metrics.json"
    source.write_text('{"ee": 0.9}\n')
    client.log_artifact(run_id, str(source), "records")
    client.set_terminated(run_id, "FINISHED")

    assert [entry.path for entry in client.list_artifacts(run_id, "records")] == ["records/metrics.json"]
    listed = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="mlflow/")
    assert f"mlflow/{run_id}/artifacts/records/metrics.json" in [item["Key"] for item in listed["Contents"]]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="records/metrics.json", dst_path=str(tmp_path / "download")
    )
    assert Path(downloaded).read_text() == '{"ee": 0.9}\n'

    # Registered versions point at the S3 folder, and fetching production downloads from there.
    artifact_uri = client.get_run(run_id).info.artifact_uri
    assert artifact_uri == f"s3://{s3.bucket}/mlflow/{run_id}/artifacts"
    version, created = registry.register_version(
        client, "mimmu-s3-test", f"{artifact_uri}/records", run_id, {"inputs_digest": "d1"}
    )
    assert created
    folder = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path / "fetched"))
    assert (Path(folder) / "metrics.json").read_text() == '{"ee": 0.9}\n'
