"""Sensitive values, configuration parsing and event validation."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from rotation_core import credentials, settings
from rotation_core.credentials import Defaults
from rotation_core.errors import ConfigurationError, EventError
from rotation_core.protocol import parse_event
from rotation_core.settings import Strategy
from rotation_core.values import Sensitive

DEFAULTS = Defaults(engines=frozenset({"postgres", "aurora-postgresql"}), port=5432, dbname="postgres", max_username=63)
SECRET = "s3cr3t-Value-never-shown"


def test_sensitive_hides_its_value_everywhere() -> None:
    value = Sensitive(SECRET)
    percent = "%s" % (value,)  # noqa: UP031 - the old formatting must hide it too
    for shown in (repr(value), str(value), f"{value}", f"{value!r}", percent, str([value])):
        assert SECRET not in shown
    assert value.reveal() == SECRET
    assert value == Sensitive(SECRET)
    assert copy.deepcopy(value) is value
    with pytest.raises(TypeError):
        pickle.dumps(value)


def test_secret_repr_never_shows_the_password() -> None:
    doc = {"engine": "postgres", "host": "db", "username": "app", "password": SECRET}
    secret = credentials.parse(json.dumps(doc), "current", DEFAULTS)
    assert SECRET not in repr(secret)
    assert secret.port == 5432 and secret.dbname == "postgres" and secret.ssl is None


def test_unknown_fields_are_kept_and_known_ones_round_trip() -> None:
    doc = {
        "engine": "aurora-postgresql",
        "host": "db",
        "port": "6543",
        "username": "app",
        "password": SECRET,
        "dbname": "shop",
        "ssl": "TRUE",
        "dbClusterIdentifier": "c1",
        "proxy": {"a": 1},
    }
    secret = credentials.parse(json.dumps(doc), "current", DEFAULTS)
    assert (secret.port, secret.ssl) == (6543, True)
    out = json.loads(secret.with_login("app_clone", Sensitive("n3w-password-value")).to_json())
    assert out["dbClusterIdentifier"] == "c1" and out["proxy"] == {"a": 1}
    assert out["username"] == "app_clone" and out["password"] == "n3w-password-value"
    assert out["engine"] == "aurora-postgresql" and out["dbname"] == "shop"


BASE = {"engine": "postgres", "host": "db", "username": "app", "password": SECRET}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": None}, "missing the field 'host'"),
        ({"password": None}, "missing the field 'password'"),
        ({"username": ""}, "field 'username' of the current secret is empty"),
        ({"port": "abc"}, "field 'port'"),
        ({"port": True}, "field 'port'"),
        ({"port": 70000}, "between 1 and 65535"),
        ({"engine": "mysql"}, "field 'engine'"),
        ({"ssl": "maybe"}, "field 'ssl'"),
        ({"username": 42}, "field 'username' of the current secret must be a string"),
        ({"password": ["x"]}, "field 'password' of the current secret must be a string"),
        ({"username": "app\x00x"}, "control character"),
        ({"username": "u" * 64}, "longer than this engine allows"),
    ],
)
def test_bad_secrets_name_the_field_and_never_the_value(change: dict[str, object], message: str) -> None:
    doc = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigurationError, match=message) as info:
        credentials.parse(json.dumps(doc), "current", DEFAULTS)
    assert SECRET not in str(info.value)
    for value in change.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in str(info.value)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", None])
def test_secret_that_is_not_a_json_object(text: str | None) -> None:
    with pytest.raises(ConfigurationError, match="current secret"):
        credentials.parse(text, "current", DEFAULTS)


def test_master_secret_is_parsed_without_anything_from_the_rotated_secret() -> None:
    master = credentials.parse_master(
        json.dumps({"username": "admin", "password": "m4ster-password"}), DEFAULTS, "postgres"
    )
    assert (master.host, master.port, master.ssl, master.username) == (None, None, None, "admin")
    named = credentials.parse_master(
        json.dumps({"username": "a", "password": "p4ssword", "host": "db", "port": "6000", "ssl": False}),
        DEFAULTS,
        "postgres",
    )
    assert (named.host, named.port, named.ssl) == ("db", 6000, False)
    login = named.login("db", 6000, "shop", ssl=None)
    assert (login.host, login.port, login.dbname, login.ssl, login.username) == ("db", 6000, "shop", None, "a")
    assert "m4ster" not in repr(master)


def test_settings() -> None:
    assert settings.load({}).strategy is Strategy.AUTO
    assert settings.load({"ROTATION_STRATEGY": "Single-User"}).strategy is Strategy.SINGLE_USER
    with pytest.raises(ConfigurationError, match="ROTATION_STRATEGY"):
        settings.load({"ROTATION_STRATEGY": "round-robin"})
    with pytest.raises(ConfigurationError, match="CONNECT_TIMEOUT"):
        settings.load({"CONNECT_TIMEOUT": "0"})
    with pytest.raises(ConfigurationError, match="DB_CA_BUNDLE"):
        settings.load({"DB_CA_BUNDLE": "/nonexistent/ca.pem"})
    assert settings.load({"SECRETS_MANAGER_ENDPOINT": "https://sm.example"}).secrets_manager_endpoint == (
        "https://sm.example"
    )
    # the standard boto3 variables win over AWS's rotation-function variable
    both = {"SECRETS_MANAGER_ENDPOINT": "https://sm.example", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://x"}
    assert settings.load(both).secrets_manager_endpoint is None


TOKEN = "a" * 36


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("createSecret", "must be a JSON object"),
        ({"SecretId": "s", "ClientRequestToken": TOKEN}, "missing the field 'Step'"),
        ({"Step": "createSecret", "ClientRequestToken": TOKEN}, "missing the field 'SecretId'"),
        ({"Step": "createSecret", "SecretId": "s"}, "missing the field 'ClientRequestToken'"),
        ({"Step": "deleteSecret", "SecretId": "s", "ClientRequestToken": TOKEN}, "field 'Step'"),
        ({"Step": "createSecret", "SecretId": 5, "ClientRequestToken": TOKEN}, "field 'SecretId'"),
        ({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "short"}, "32 to 64"),
        ({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": TOKEN, "RotationToken": 1}, "RotationToken"),
    ],
)
def test_malformed_events(raw: object, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_event(raw)


def test_rotation_token_is_kept_but_never_shown() -> None:
    event = parse_event(
        {"Step": "createSecret", "SecretId": "s", "ClientRequestToken": TOKEN, "RotationToken": "rot-token-value"}
    )
    assert event.rotation_token == "rot-token-value"
    assert "rot-token-value" not in repr(event)


def test_trusted_secret_arns() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/master-AbCdEf"
    loaded = settings.load({"TRUSTED_SECRET_ARNS": f" {arn} ,"})
    assert loaded.trusted_secret_arns == frozenset({arn})
    assert settings.load({}).trusted_secret_arns is None
    with pytest.raises(ConfigurationError, match="TRUSTED_SECRET_ARNS"):
        settings.load({"TRUSTED_SECRET_ARNS": "prod/master"})
    assert settings.is_trusted(arn, frozenset({arn}))
    assert settings.is_trusted(arn[:-7], frozenset({arn}))
    # Another secret whose name ends like a suffix is not the trusted one.
    assert not settings.is_trusted(arn[:-7] + "-XyZ123", frozenset({arn}))
    assert not settings.is_trusted(arn + "-XyZ123", frozenset({arn}))
    # The stack's "any suffix" form, as IAM reads it.
    any_suffix = frozenset({arn[:-7] + "-??????"})
    assert settings.load({"TRUSTED_SECRET_ARNS": arn[:-7] + "-??????"}).trusted_secret_arns == any_suffix
    assert settings.is_trusted(arn, any_suffix) and settings.is_trusted(arn[:-7], any_suffix)
    assert not settings.is_trusted(arn[:-7] + "x-AbCdEf", any_suffix)


def test_writer_of_a_replica() -> None:
    def secret(**extra: object) -> credentials.DatabaseSecret:
        return credentials.parse(json.dumps({**BASE, "port": 5432, **extra}), "current", DEFAULTS)

    assert credentials.writer_of(secret()) is None
    assert credentials.writer_of(secret(writer_host="primary")) == ("primary", 5432)
    assert credentials.writer_of(secret(writer_host="primary", writer_port="6000")) == ("primary", 6000)
    assert credentials.writer_of(secret(writer_host=BASE["host"].upper())) is None, "the same server: no replica"
    with pytest.raises(ConfigurationError, match="'writer_port' of the current secret needs field 'writer_host'"):
        credentials.writer_of(secret(writer_port=6000))
    with pytest.raises(ConfigurationError, match="field 'writer_port' of the current secret must be between"):
        credentials.writer_of(secret(writer_host="primary", writer_port=70000))
    with pytest.raises(ConfigurationError, match="'writer_host' of the current secret must be a string"):
        credentials.writer_of(secret(writer_host=5))
