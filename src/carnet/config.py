"""Settings: the only module that reads the environment.

Every setting comes from a ``CARNET_*`` environment variable (or a ``.env`` file in the working
directory). ``get_settings()`` builds and validates them once; tests and the CLI build their own
``Settings`` objects and pass them in, so nothing else in Carnet reads ``os.environ``.

Outside development the settings refuse to start with an insecure default: the development keys
below are public (they are in this file), so a production or staging deployment must supply its own.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import urllib.parse
import zoneinfo
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(enum.StrEnum):
    """Where Carnet runs. Only ``production`` enforces the national rules that test data cannot meet."""

    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class BlobBackend(enum.StrEnum):
    """Where document bytes are kept (always encrypted)."""

    DATABASE = "database"
    FILESYSTEM = "filesystem"


class EmailBackend(enum.StrEnum):
    """How notification e-mails leave Carnet."""

    NULL = "null"  # discarded (development): the development mailbox page shows what would have been sent
    SMTP = "smtp"


class SmsBackend(enum.StrEnum):
    """How notification SMS leave Carnet."""

    NULL = "null"
    HTTP = "http"  # an HTTP SMS gateway (JSON body, bearer token, Idempotency-Key header)


# Development-only key material. Public by construction: the settings refuse these values outside
# development and test. Each is 32 bytes, base64-encoded.
DEV_KEK = "dev:" + base64.b64encode(b"carnet-dev-key-encryption-key-01").decode()
DEV_INDEX_KEY = base64.b64encode(b"carnet-dev-blind-index-hmac-key!").decode()
# An Ed25519 JSON Web Key Set; the first key signs access tokens, every key verifies (rotation).
DEV_SIGNING_KEYS = (
    '{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "dev-1", "use": "sig", "alg": "Ed25519", '
    '"x": "jhle8TCH9g2enqsfzGp24WaRWdihylS9D3yR0B0q8Hc", "d": "Y2FybmV0LWRldi1zaWduaW5nLWtleS1zZWVkLTAwMDE"}]}'
)
# The seed of the Ed25519 key that signs audit checkpoints (carnet.audit.checkpoints).
DEV_AUDIT_SIGNING_KEY = base64.b64encode(b"carnet-dev-audit-checkpoint-key!").decode()

MIB = 1024 * 1024
# The periods the law sets (reference/dmp.md §5): six weeks to object, ten years of archive.
LEGAL_OPPOSITION_DAYS = 42
LEGAL_RETENTION_YEARS = 10


def _decode_key(value: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name} must be base64-encoded") from exc
    if len(raw) != 32:
        raise ValueError(f"{name} must decode to exactly 32 bytes (got {len(raw)})")
    return raw


class Settings(BaseSettings):
    """Validated configuration for one Carnet process."""

    model_config = SettingsConfigDict(
        env_prefix="CARNET_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # validation errors must never echo key material
    )

    env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite:///./var/carnet.db"
    base_url: str = "http://127.0.0.1:8000"

    # Key-encryption keys, "kid:base64" separated by commas; the first one wraps new record keys,
    # the others still unwrap older ones (rotation without downtime).
    kek: Annotated[SecretStr, NoDecode] = SecretStr(DEV_KEK)
    index_key: SecretStr = SecretStr(DEV_INDEX_KEY)
    signing_keys: SecretStr = SecretStr(DEV_SIGNING_KEYS)
    # Lifetime of access tokens issued to professionals, software and patients; development tokens
    # (`carnet token`) live longer for convenience.
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    token_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)

    # Emergency access (break-glass, regulation centre): read-only, for this long.
    emergency_minutes: int = Field(default=240, ge=5, le=24 * 60)
    # The habilitation matrix (profession × specialty × document type); the shipped one by default.
    habilitation_matrix: Path | None = None

    # Mutual TLS: `carnet serve` terminates TLS itself with these, or a proxy passes the verified client
    # certificate (URL-encoded PEM) in `client_cert_header`, trusted only from `trusted_proxies`.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    client_cert_header: str = "x-ssl-client-cert"

    # OpenID Connect (Pro Santé Connect or a compatible provider) for professionals.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid scope_all"

    # Patient sign-in.
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_seconds: int = Field(default=900, ge=1)
    source_max_failures_per_minute: int = Field(default=30, ge=1)
    session_idle_seconds: int = Field(default=1800, ge=60)
    session_max_seconds: int = Field(default=12 * 3600, ge=60)
    activation_code_days: int = Field(default=30, ge=1)
    reset_code_seconds: int = Field(default=900, ge=60)

    # ------------------------------------------------------------------ record lifecycle (carnet.records.lifecycle)
    # An announced record opens this many days after the patient was informed, unless they object
    # (R1111-28: six weeks); a closed record is kept this many years from its closure, then destroyed
    # (R1111-36, L1111-18: ten years). Production refuses shorter periods than the law's.
    record_opposition_days: int = Field(default=LEGAL_OPPOSITION_DAYS, ge=0, le=365)
    record_retention_years: int = Field(default=LEGAL_RETENTION_YEARS, ge=0, le=100)
    # The worker looks for records to open (and, unless turned off, to destroy) this often.
    record_jobs_seconds: int = Field(default=300, ge=1, le=24 * 3600)
    record_jobs_batch: int = Field(default=200, ge=1, le=10_000)
    record_auto_purge: bool = True

    blob_backend: BlobBackend = BlobBackend.DATABASE
    blob_dir: Path = Path("./var/blobs")

    max_document_bytes: int = Field(default=20 * MIB, ge=1024)
    max_patient_upload_bytes: int = Field(default=5 * MIB, ge=1024)
    default_page_size: int = Field(default=20, ge=1, le=1000)
    max_page_size: int = Field(default=100, ge=1, le=1000)

    # ------------------------------------------------------------------ notifications (carnet.notifications)
    # Channels. E-mail through SMTP (STARTTLS by default, or implicit TLS), SMS through an HTTP gateway;
    # "null" discards (development). Messages never carry medical content: what happened and a link.
    notify_email_backend: EmailBackend = EmailBackend.NULL
    notify_smtp_host: str = "127.0.0.1"
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_starttls: bool = True
    notify_smtp_ssl: bool = False  # implicit TLS (port 465); excludes STARTTLS
    notify_smtp_user: str | None = None
    notify_smtp_password: SecretStr | None = None
    notify_smtp_from: str = "Carnet <notifications@carnet.localhost>"
    notify_smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    notify_sms_backend: SmsBackend = SmsBackend.NULL
    notify_sms_url: str | None = None
    notify_sms_token: SecretStr | None = None
    notify_sms_sender: str = Field(default="Carnet", min_length=1, max_length=11)
    notify_sms_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # The portal link put in every message (default: CARNET_BASE_URL) and the domain of Message-IDs
    # (default: the host of CARNET_BASE_URL).
    notify_portal_url: str | None = None
    notify_message_id_domain: str | None = None
    notify_timezone: str = "Europe/Paris"
    # Delivery: attempts before dead-lettering, exponential backoff with jitter between attempts, the
    # lease a worker holds on the deliveries it claimed (a crashed worker's are retried after it).
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    notify_backoff_base_seconds: float = Field(default=30.0, gt=0)
    notify_backoff_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    notify_lease_seconds: float = Field(default=120.0, ge=1)
    notify_batch_size: int = Field(default=50, ge=1, le=1000)
    notify_poll_seconds: float = Field(default=1.0, gt=0, le=300)
    # `carnet serve` in development runs a notification worker in its own process.
    notify_dev_worker: bool = True
    # (record, professional) pairs known to have accessed, remembered per process (spares a query per read).
    notify_known_access_cache: int = Field(default=100_000, ge=0)

    # ------------------------------------------------------------------ audit trail (carnet.audit)
    # Checkpoints over the chain heads are signed with this Ed25519 key: a PEM private key or the base64
    # of its raw 32-byte seed. Public keys of earlier signing keys (PEM or base64 raw, comma-separated)
    # still verify the checkpoints they signed after a rotation.
    audit_signing_key: SecretStr = SecretStr(DEV_AUDIT_SIGNING_KEY)
    audit_previous_public_keys: str = ""
    # A checkpoint is due this often (`carnet.audit.jobs.run_due_jobs`); it covers the heads whose last
    # change is at most `margin` older than the previous checkpoint, so a transaction that commits up to
    # `margin` seconds after it began is never missed (docs/audit.md, "Checkpoints").
    audit_checkpoint_seconds: int = Field(default=300, ge=1, le=24 * 3600)
    audit_checkpoint_margin_seconds: int = Field(default=120, ge=0, le=24 * 3600)
    # PostgreSQL: monthly partitions of audit_entries kept this many months ahead (the daily upkeep).
    audit_partitions_ahead: int = Field(default=3, ge=0, le=36)
    # The time zone of dates in the patient's history labels.
    audit_timezone: str = "Europe/Paris"

    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Threads per process running the (synchronous) database work of requests. Two keep the CPU busy
    # while one waits on the database; more only fight over the GIL, which widens the latency tail
    # (docs/benchmarks.md: 2 beat 6 on deposits, search and retrieve in two alternated runs).
    worker_threads: int = Field(default=2, ge=1, le=200)
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the supported PostgreSQL driver.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite") or value.startswith("postgresql+psycopg://")):
            raise ValueError("CARNET_DATABASE_URL must be sqlite:///… or postgresql://…")
        return value

    @model_validator(mode="after")
    def _validate_keys(self) -> Self:
        self.key_encryption_keys()  # raises on malformed material
        _decode_key(self.index_key.get_secret_value(), "CARNET_INDEX_KEY")
        self.signing_key_set()  # raises on malformed material
        if self.max_page_size < self.default_page_size:
            raise ValueError("CARNET_MAX_PAGE_SIZE must be at least CARNET_DEFAULT_PAGE_SIZE")
        if self.env in (Environment.DEVELOPMENT, Environment.TEST):
            return self
        insecure = []
        if any(kid == "dev" or key == _decode_key(DEV_KEK[4:], "dev") for kid, key in self.key_encryption_keys()):
            insecure.append("CARNET_KEK")
        if self.index_key.get_secret_value() == DEV_INDEX_KEY:
            insecure.append("CARNET_INDEX_KEY")
        if "dev-1" in {k.get("kid") for k in self.signing_key_set()}:
            insecure.append("CARNET_SIGNING_KEYS")
        if self.audit_signing_seed() == _decode_key(DEV_AUDIT_SIGNING_KEY, "dev"):
            insecure.append("CARNET_AUDIT_SIGNING_KEY")
        if insecure:
            raise ValueError(
                f"{', '.join(insecure)} still hold the public development value; "
                f"set your own keys before running with CARNET_ENV={self.env.value}"
            )
        if self.env is Environment.PRODUCTION and not self.base_url.startswith("https://"):
            raise ValueError("CARNET_BASE_URL must use https:// in production")
        if self.env is Environment.PRODUCTION and self.record_opposition_days < LEGAL_OPPOSITION_DAYS:
            raise ValueError(f"CARNET_RECORD_OPPOSITION_DAYS must be at least {LEGAL_OPPOSITION_DAYS} in production")
        if self.env is Environment.PRODUCTION and self.record_retention_years < LEGAL_RETENTION_YEARS:
            raise ValueError(f"CARNET_RECORD_RETENTION_YEARS must be at least {LEGAL_RETENTION_YEARS} in production")
        return self

    # ------------------------------------------------------------------ derived values
    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def allows_dev_tokens(self) -> bool:
        """The development authenticator exists only in development and test."""
        return self.env in (Environment.DEVELOPMENT, Environment.TEST)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    def key_encryption_keys(self) -> list[tuple[str, bytes]]:
        """Parse CARNET_KEK into [(kid, key)], the active key first."""
        keys: list[tuple[str, bytes]] = []
        for part in self.kek.get_secret_value().split(","):
            kid, sep, material = part.strip().partition(":")
            if not sep or not kid:
                raise ValueError("CARNET_KEK entries must look like 'kid:base64key'")
            keys.append((kid, _decode_key(material, f"CARNET_KEK[{kid}]")))
        if len({kid for kid, _ in keys}) != len(keys):
            raise ValueError("CARNET_KEK has two keys with the same id")
        return keys

    def index_key_bytes(self) -> bytes:
        return _decode_key(self.index_key.get_secret_value(), "CARNET_INDEX_KEY")

    def signing_key_set(self) -> list[dict[str, str]]:
        """The signing keys as JWK dicts, the active one first."""
        try:
            data = json.loads(self.signing_keys.get_secret_value())
        except json.JSONDecodeError as exc:
            raise ValueError("CARNET_SIGNING_KEYS must be a JSON Web Key Set") from exc
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) and k.get("kid") for k in keys):
            raise ValueError("CARNET_SIGNING_KEYS must be a JSON Web Key Set of private keys with a kid each")
        if not all("d" in k for k in keys):
            raise ValueError("CARNET_SIGNING_KEYS holds private keys (with their 'd' member)")
        return keys

    @property
    def cookie_secure(self) -> bool:
        return self.base_url.startswith("https://")

    def public_database_url(self) -> str:
        """The database URL with any password masked (in the authority or the query), for logs and the CLI."""
        scheme, sep, rest = self.database_url.partition("://")
        authority, slash, tail = rest.partition("/")
        if "@" in authority:  # the password may itself contain '@': the host follows the last one
            credentials, host = authority.rsplit("@", 1)
            user, colon, _ = credentials.partition(":")
            authority = f"{user}:***@{host}" if colon else authority
        tail = re.sub(r"(?i)([?&](?:password|passfile)=)[^&]*", r"\1***", tail)
        return f"{scheme}{sep}{authority}{slash}{tail}"

    # ------------------------------------------------------------------ notifications (carnet.notifications)
    @field_validator("notify_portal_url", "notify_sms_url")
    @classmethod
    def _strip_url_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("notify_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"CARNET_NOTIFY_TIMEZONE: unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _validate_notifications(self) -> Self:
        if self.notify_smtp_ssl and self.notify_smtp_starttls:
            raise ValueError("CARNET_NOTIFY_SMTP_SSL (implicit TLS) and CARNET_NOTIFY_SMTP_STARTTLS exclude each other")
        if self.notify_sms_backend is SmsBackend.HTTP:
            if not self.notify_sms_url or not self.notify_sms_url.startswith(("https://", "http://")):
                raise ValueError("CARNET_NOTIFY_SMS_BACKEND=http needs CARNET_NOTIFY_SMS_URL (https://…)")
            if self.notify_sms_token is None:
                raise ValueError("CARNET_NOTIFY_SMS_BACKEND=http needs CARNET_NOTIFY_SMS_TOKEN")
            if self.env is Environment.PRODUCTION and not self.notify_sms_url.startswith("https://"):
                raise ValueError("CARNET_NOTIFY_SMS_URL must use https:// in production")
        if self.notify_backoff_max_seconds < self.notify_backoff_base_seconds:
            raise ValueError("CARNET_NOTIFY_BACKOFF_MAX_SECONDS must be at least CARNET_NOTIFY_BACKOFF_BASE_SECONDS")
        return self

    @property
    def portal_url(self) -> str:
        """The link notifications point to."""
        return self.notify_portal_url or self.base_url

    @property
    def message_id_domain(self) -> str:
        """The right-hand side of notification e-mails' Message-IDs."""
        return self.notify_message_id_domain or urllib.parse.urlsplit(self.base_url).hostname or "carnet.localhost"

    # ------------------------------------------------------------------ audit trail (carnet.audit)
    @field_validator("audit_timezone")
    @classmethod
    def _known_audit_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"CARNET_AUDIT_TIMEZONE: unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _validate_audit(self) -> Self:
        self.audit_signing_seed()  # raises on malformed material
        self.audit_verify_public_keys()
        return self

    def audit_signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed that signs audit checkpoints (CARNET_AUDIT_SIGNING_KEY: PEM or base64 seed)."""
        value = self.audit_signing_key.get_secret_value().strip()
        if not value.startswith("-----BEGIN"):
            return _decode_key(value, "CARNET_AUDIT_SIGNING_KEY")
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - only for PEM keys
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

        try:
            key = serialization.load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("CARNET_AUDIT_SIGNING_KEY is not a readable unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("CARNET_AUDIT_SIGNING_KEY must be an Ed25519 private key")
        return key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def audit_verify_public_keys(self) -> list[bytes]:
        """Raw 32-byte public keys of earlier checkpoint signing keys (CARNET_AUDIT_PREVIOUS_PUBLIC_KEYS)."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - only when keys are set
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

        keys: list[bytes] = []
        for part in (p.strip() for p in self.audit_previous_public_keys.split(",")):
            if not part:
                continue
            if part.startswith("-----BEGIN"):
                try:
                    key = serialization.load_pem_public_key(part.encode())
                except ValueError as exc:
                    raise ValueError("CARNET_AUDIT_PREVIOUS_PUBLIC_KEYS holds an unreadable PEM key") from exc
                if not isinstance(key, Ed25519PublicKey):
                    raise ValueError("CARNET_AUDIT_PREVIOUS_PUBLIC_KEYS holds Ed25519 public keys only")
                keys.append(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
            else:
                keys.append(_decode_key(part, "CARNET_AUDIT_PREVIOUS_PUBLIC_KEYS"))
        return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
