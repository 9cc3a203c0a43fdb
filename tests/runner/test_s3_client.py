"""The one S3 client policy: the same decisions for reading and writing."""

from __future__ import annotations

import botocore.session
import pytest

from kingest.runner.s3_client import (
    MAX_ATTEMPTS,
    client_for,
    endpoint_of,
    filesystem_for,
    session_for,
)
from kingest.runner.uri import S3Uri

KEYS = {"access_key_id": "AKIA", "secret_access_key": "secret"}


@pytest.fixture(autouse=True)
def _no_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def test_an_s3_compatible_store_gets_path_style_and_checksums_only_where_required() -> None:
    config = client_for(S3Uri(endpoint_url="http://minio:9000", **KEYS), "bucket").meta.config
    assert config.s3["addressing_style"] == "path"
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.retries == {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}


def test_aws_gets_its_own_addressing_and_checksums() -> None:
    config = client_for(S3Uri(region="eu-west-1", **KEYS), "bucket").meta.config
    assert config.s3["addressing_style"] == "auto"
    assert config.request_checksum_calculation == "when_supported"
    assert config.region_name == "eu-west-1"


def test_a_legacy_bucket_name_is_addressed_by_path_even_on_aws() -> None:
    config = client_for(S3Uri(**KEYS), "My_Bucket").meta.config
    assert config.s3["addressing_style"] == "path"


def test_the_sdk_endpoint_variables_make_a_store_s3_compatible(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:9000")
    uri = S3Uri(**KEYS)
    assert endpoint_of(uri) == "http://localhost:9000"
    assert client_for(uri, "bucket").meta.config.s3["addressing_style"] == "path"
    options = filesystem_for(uri, session_for(uri), "us-east-1").__reduce__()[1][0]
    assert (options["scheme"], options["endpoint_override"]) == ("http", "localhost:9000")


def test_the_uri_keys_win_over_the_default_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert session_for(S3Uri(**KEYS)).get_credentials().access_key == "AKIA"
    assert session_for(S3Uri()).get_credentials().access_key == "from-env"


def test_botocores_data_files_load_the_same_as_plain_dicts() -> None:
    ours = session_for(S3Uri()).get_component("data_loader")
    botocores = botocore.session.Session().get_component("data_loader")
    # A gzipped service model and a plain JSON file (the partitions' endpoints).
    model = ours.load_service_model("s3", "service-2")
    endpoints = ours.load_data("endpoints")
    assert type(model) is dict and type(endpoints) is dict
    assert model == botocores.load_service_model("s3", "service-2")
    assert endpoints == botocores.load_data("endpoints")
    # In the same order, too (the equality of dicts ignores it).
    theirs = botocores.load_service_model("s3", "service-2")
    assert list(model["operations"]) == list(theirs["operations"])
    assert list(model["shapes"]["PutObjectRequest"]["members"]) == list(
        theirs["shapes"]["PutObjectRequest"]["members"]
    )
