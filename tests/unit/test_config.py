"""Settings: validation of keys, URLs and environments. Built from explicit arguments, never the environment."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from carnet.config import DEV_AUDIT_SIGNING_KEY, DEV_INDEX_KEY, DEV_KEK, DEV_SIGNING_KEYS, Environment, Settings
from tests.factories import signing_keys


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CARNET_* variable and no .env file can leak into the settings under test."""
    for name in list(os.environ):
        if name.upper().startswith("CARNET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


KEK_A = b64(b"A" * 32)
KEK_B = b64(b"B" * 32)
INDEX = b64(b"I" * 32)
AUDIT = b64(b"S" * 32)
SIGNING = signing_keys("k1")


def secure(**overrides: Any) -> dict[str, Any]:
    """Arguments of a deployment with its own keys and an https base URL."""
    values: dict[str, Any] = {
        "env": "production",
        "kek": f"k1:{KEK_A}",
        "index_key": INDEX,
        "signing_keys": SIGNING,
        "audit_signing_key": AUDIT,
        "base_url": "https://dmp.example.fr",
        "database_url": "postgresql://carnet:s3cret@db.internal:5432/carnet",
    }
    values.update(overrides)
    return values


def make(**values: Any) -> Settings:
    return Settings(**values)


# ---------------------------------------------------------------- defaults and development


def test_development_defaults_are_valid() -> None:
    settings = make()
    assert settings.env is Environment.DEVELOPMENT
    assert settings.is_sqlite
    assert settings.key_encryption_keys() == [("dev", b"carnet-dev-key-encryption-key-01")]
    assert settings.index_key_bytes() == b"carnet-dev-blind-index-hmac-key!"
    assert settings.signing_key_set()[0]["kid"] == "dev-1"
    assert settings.fhir_base == "http://127.0.0.1:8000/fhir"
    assert settings.is_production is False


def test_test_environment_accepts_the_development_keys() -> None:
    settings = make(env="test", base_url="http://testserver")
    assert settings.env is Environment.TEST
    assert settings.kek.get_secret_value() == DEV_KEK


@pytest.mark.parametrize("env", ["production", "staging"])
def test_development_keys_are_refused_outside_development_naming_every_variable(env: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make(env=env, base_url="https://dmp.example.fr")
    message = str(caught.value)
    for variable in ("CARNET_KEK", "CARNET_INDEX_KEY", "CARNET_SIGNING_KEYS", "CARNET_AUDIT_SIGNING_KEY"):
        assert variable in message
    assert f"CARNET_ENV={env}" in message


@pytest.mark.parametrize(
    ("override", "named", "not_named"),
    [
        ({"kek": DEV_KEK}, "CARNET_KEK", ("CARNET_INDEX_KEY", "CARNET_SIGNING_KEYS")),
        ({"index_key": DEV_INDEX_KEY}, "CARNET_INDEX_KEY", ("CARNET_KEK", "CARNET_SIGNING_KEYS")),
        ({"signing_keys": DEV_SIGNING_KEYS}, "CARNET_SIGNING_KEYS", ("CARNET_KEK", "CARNET_INDEX_KEY")),
        (
            {"audit_signing_key": DEV_AUDIT_SIGNING_KEY},
            "CARNET_AUDIT_SIGNING_KEY",
            ("CARNET_KEK", "CARNET_SIGNING_KEYS"),
        ),
    ],
)
def test_each_remaining_development_key_is_named(
    override: dict[str, str], named: str, not_named: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError, match="public development value") as caught:
        make(**secure(**override))
    message = str(caught.value)
    assert named in message
    for other in not_named:
        assert other not in message


def test_development_key_material_under_another_kid_is_refused() -> None:
    with pytest.raises(ValidationError, match="CARNET_KEK"):
        make(**secure(kek=f"k1:{KEK_A},prod-old:{DEV_KEK[4:]}"))


def test_a_kek_named_dev_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="CARNET_KEK"):
        make(**secure(kek=f"dev:{KEK_A}"))


def test_production_with_own_keys_and_https_passes() -> None:
    settings = make(**secure())
    assert settings.is_production
    assert settings.allows_dev_tokens is False
    assert settings.key_encryption_keys() == [("k1", b"A" * 32)]
    assert settings.index_key_bytes() == b"I" * 32
    assert settings.signing_key_set()[0]["kid"] == "k1"
    assert settings.fhir_base == "https://dmp.example.fr/fhir"


def test_production_refuses_an_http_base_url() -> None:
    with pytest.raises(ValidationError, match=r"CARNET_BASE_URL must use https:// in production"):
        make(**secure(base_url="http://dmp.example.fr"))


def test_staging_may_use_http() -> None:
    assert make(**secure(env="staging", base_url="http://staging.local")).base_url == "http://staging.local"


def test_base_url_loses_its_trailing_slash() -> None:
    settings = make(base_url="http://127.0.0.1:8000/")
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.fhir_base == "http://127.0.0.1:8000/fhir"


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError, match="env"):
        make(env="prod")


# ---------------------------------------------------------------- CARNET_KEK parsing


def test_kek_lists_keys_active_first() -> None:
    settings = make(**secure(kek=f"k2:{KEK_B}, k1:{KEK_A}"))
    assert settings.key_encryption_keys() == [("k2", b"B" * 32), ("k1", b"A" * 32)]


@pytest.mark.parametrize(
    ("kek", "fault"),
    [
        ("nocolon", "must look like 'kid:base64key'"),
        (f":{KEK_A}", "must look like 'kid:base64key'"),
        (f"k1:{KEK_A},", "must look like 'kid:base64key'"),
        ("k1:not base64!!", r"CARNET_KEK\[k1\] must be base64-encoded"),
        (f"k1:{b64(b'x' * 16)}", r"CARNET_KEK\[k1\] must decode to exactly 32 bytes \(got 16\)"),
        (f"k1:{b64(b'x' * 33)}", r"exactly 32 bytes \(got 33\)"),
        (f"k1:{KEK_A},k1:{KEK_B}", "two keys with the same id"),
    ],
)
@pytest.mark.parametrize("env", ["development", "production"])
def test_malformed_kek_is_refused(kek: str, fault: str, env: str) -> None:
    with pytest.raises(ValidationError, match=fault):
        make(**secure(env=env, kek=kek))


@pytest.mark.parametrize(
    ("value", "fault"),
    [("%%%", "must be base64-encoded"), (b64(b"short"), r"must decode to exactly 32 bytes \(got 5\)")],
)
def test_malformed_index_key_is_refused(value: str, fault: str) -> None:
    with pytest.raises(ValidationError, match=f"CARNET_INDEX_KEY {fault}"):
        make(index_key=value)


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        ("not json", "must be a JSON Web Key Set"),
        ('{"keys": []}', "must be a JSON Web Key Set of private keys"),
        ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc"}]}', "with a kid each"),
        ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "k"}]}', "holds private keys"),
    ],
)
def test_malformed_signing_keys_are_refused(value: str, fault: str) -> None:
    with pytest.raises(ValidationError, match=fault):
        make(signing_keys=value)


def test_validation_errors_do_not_echo_key_material() -> None:
    """A refused configuration is printed at startup; it must not carry any part of the secrets."""
    token = signing_keys("leak")
    index = b64(b"\x3c\x99" * 16)
    kek = b64(b"\x61\xf0" * 16)
    with pytest.raises(ValidationError) as caught:
        make(**secure(base_url="http://dmp.example.fr", kek=f"k1:{kek}", index_key=index, signing_keys=token))
    rendered = f"{caught.value}\n{caught.value!r}"  # what a traceback or a log line shows
    private = token.split('"d": "')[1].split('"')[0]
    for secret in (private, index, kek):
        for start in range(len(secret) - 8):
            assert secret[start : start + 8] not in rendered, f"part of a key leaks into the error: {rendered}"


def test_secrets_are_masked_in_repr() -> None:
    settings = make(**secure())
    assert INDEX not in repr(settings)
    assert KEK_A not in repr(settings)
    assert SIGNING.split('"d": "')[1][:20] not in repr(settings)


# ---------------------------------------------------------------- database URL


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///./var/carnet.db", "sqlite:///./var/carnet.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_database_url_normalised_to_psycopg(url: str, normalised: str) -> None:
    settings = make(database_url=url)
    assert settings.database_url == normalised
    assert settings.is_sqlite is normalised.startswith("sqlite")


@pytest.mark.parametrize(
    "url", ["mysql://u:p@h/d", "postgresql+asyncpg://u@h/d", "postgresql+psycopg2://u@h/d", "oracle://h", "h/d"]
)
def test_unknown_database_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="CARNET_DATABASE_URL must be sqlite"):
        make(database_url=url)


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("postgresql://carnet:s3cret@db:5432/carnet", "postgresql+psycopg://carnet:***@db:5432/carnet"),
        ("postgresql://carnet:p@ss@db/carnet", "postgresql+psycopg://carnet:***@db/carnet"),
        ("postgresql://carnet@db/carnet", "postgresql+psycopg://carnet@db/carnet"),
        ("sqlite:///./var/carnet.db", "sqlite:///./var/carnet.db"),
    ],
)
def test_public_database_url_masks_the_password(url: str, public: str) -> None:
    assert make(database_url=url).public_database_url() == public


def test_public_database_url_masks_a_password_given_as_a_query_parameter() -> None:
    # libpq and SQLAlchemy accept the password as a query parameter, too.
    settings = make(database_url="postgresql://db.internal/carnet?user=carnet&password=s3cret")
    assert "s3cret" not in settings.public_database_url()


# ---------------------------------------------------------------- derived values and bounds


@pytest.mark.parametrize(
    ("env", "allowed"),
    [("development", True), ("test", True), ("staging", False), ("production", False)],
)
def test_dev_tokens_only_in_development_and_test(env: str, allowed: bool) -> None:
    settings = make(**secure(env=env))
    assert settings.allows_dev_tokens is allowed
    assert settings.is_production is (env == "production")


def test_max_page_size_cannot_be_below_the_default() -> None:
    with pytest.raises(ValidationError, match="CARNET_MAX_PAGE_SIZE must be at least CARNET_DEFAULT_PAGE_SIZE"):
        make(default_page_size=50, max_page_size=40)
    assert make(default_page_size=50, max_page_size=50).max_page_size == 50


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_ttl_seconds", 59),
        ("token_ttl_seconds", 7 * 24 * 3600 + 1),
        ("max_document_bytes", 1023),
        ("default_page_size", 0),
        ("max_page_size", 1001),
        ("db_pool_size", 0),
    ],
)
def test_numeric_bounds(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        make(**{field: value})


def test_environment_variables_are_read_when_no_argument_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARNET_MAX_PAGE_SIZE", "250")
    monkeypatch.setenv("CARNET_DATABASE_URL", "postgres://u@h/d")
    settings = make()
    assert settings.max_page_size == 250
    assert settings.database_url == "postgresql+psycopg://u@h/d"
    # An explicit argument wins over the environment.
    assert make(max_page_size=30).max_page_size == 30
