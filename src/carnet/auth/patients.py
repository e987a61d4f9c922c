"""Patient and legal-representative sign-in: activation, password + TOTP, lockout, password reset.

Who signs in here, and with what:

* a **patient** is identified by their INS (the 15-character matricule; the INS system is not asked
  for: the record index is keyed on the matricule alone);
* a **legal representative** has no INS here: they are identified by their *login*, the id of their
  account (a UUID, printed with their activation code). The account's label is accepted too when
  exactly one patient or representative account carries it (the demo accounts are labelled with
  their persona key, e.g. ``marc_parent``). A patient may use their login instead of their INS.

Activation: an operator issues a one-time code (``carnet account activation-code``) for a record or
a representative's account; the person proves who they are with the code and a birth date — their
own for a patient, that of one child they represent for a representative (a representative has no
Patient resource of their own here, and the child's birth date is what the operator and the parent
both know) — chooses a password and receives a fresh TOTP secret. The credential counts as
*confirmed* once a first TOTP code has been accepted (``totp_last_step > 0``): until then sign-in
is refused. Activating again (a new code from the operator: lost authenticator) replaces the
password and the TOTP secret and signs out every session.

Every failure of a code, password or TOTP check gives the same answer, whether the INS, login, code,
birth date, password or TOTP code was wrong, whether the account exists and whether it is locked.
Failures are counted per source address (``login_attempts``: ``429`` past
``settings.source_max_failures_per_minute`` a minute) and, for sign-in, per account (lockout for
``settings.login_lockout_seconds`` after ``settings.login_max_failures`` consecutive failures).
Functions here never raise for those failures (the unit of work must commit the counters): they
return a status the HTTP layer turns into its answer.

Secrets at rest: passwords as argon2id hashes (argon2-cffi defaults); TOTP secrets AES-256-GCM
encrypted with a key derived (HKDF-SHA256, info ``carnet-totp``) from a key-encryption key, whose id
is stored with the ciphertext so a key rotation keeps older secrets readable; one-time codes as
HMAC-SHA256 under the blind-index key (they are random, 49 bits: a slow hash adds nothing).
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import functools
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carnet import audit
from carnet.accounts import service as accounts
from carnet.accounts.models import (
    Account,
    AccountKind,
    Credential,
    LoginAttempt,
    OneTimeCode,
)
from carnet.audit.trace import Outcome, TraceAction
from carnet.auth import sessions
from carnet.auth.actor import Actor, ActorKind
from carnet.config import Settings
from carnet.errors import Invalid, IssueCode, Problem
from carnet.identifiers import INS_NIR_OID, IdentifierError, Ins, parse_ins
from carnet.logging import log
from carnet.notifications import reset_code
from carnet.records import service as records
from carnet.records.models import Record
from carnet.runtime import Work

# ---------------------------------------------------------------------------------------- constants
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed from paper
CODE_LENGTH = 10  # 31**10 ≈ 2**49.5
MAX_CODE_ATTEMPTS = 5  # wrong birth dates (or TOTP codes, for a reset) before a code is spent
RESET_REQUEST_COOLDOWN = dt.timedelta(seconds=60)  # at most one reset code a minute per account
TOTP_ISSUER = "Carnet"
TOTP_DIGITS = 6
TOTP_INTERVAL = 30
TOTP_WINDOW = 1  # steps accepted either side of the current one (clock drift)
CONFIRMED_WITHOUT_CODE = 1  # totp_last_step of credentials set confirmed by set_credentials
PASSWORD_MIN = 12
PASSWORD_MAX = 256
PERSON_KINDS = (AccountKind.PATIENT.value, AccountKind.REPRESENTATIVE.value)
SOURCE_WINDOW = dt.timedelta(minutes=1)
_TOTP_CONTEXT = b"carnet-totp"
_TOTP_FORMAT = b"\x01"
# argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4). The tests
# swap in a cheaper one; hashes record their parameters, and check_needs_rehash upgrades old ones.
hasher = PasswordHasher()


class Purpose(enum.StrEnum):
    ACTIVATION = "activation"
    RESET = "reset"


class Status(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"  # the one generic failure
    THROTTLED = "throttled"  # too many failures from this source address
    UNCONFIRMED = "unconfirmed"  # right password, but the authenticator was never confirmed


@dataclass(frozen=True, slots=True)
class Activation:
    status: Status
    account_id: uuid.UUID | None = None
    totp_secret: str | None = None
    otpauth_uri: str | None = None


@dataclass(frozen=True, slots=True)
class SignIn:
    status: Status
    account_id: uuid.UUID | None = None
    session_token: str | None = None


@dataclass(frozen=True, slots=True)
class ResetRequest:
    status: Status
    account_id: uuid.UUID | None = None
    # Whether a message carrying the code was staged (the account has an e-mail address or a mobile
    # number). Never told to the caller: the answer is the same whatever happened.
    notified: bool = False


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    expires_at: dt.datetime
    account_id: uuid.UUID | None
    record_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Target:
    """Whom an INS or login designates: a record and/or an account."""

    record: Record | None
    account: Account | None


# ---------------------------------------------------------------------------------------- passwords
def password_problems(
    password: str,
    *,
    birth_dates: Iterable[dt.date] = (),
    identifiers: Iterable[str] = (),
) -> list[str]:
    """What is wrong with a password (empty: acceptable).

    At least 12 characters, at least two classes of characters among lower-case letters, upper-case
    letters, digits and others, and neither a birth date (YYYYMMDD, DDMMYYYY, YYMMDD, DDMMYY, with or
    without separators) nor an identifier (the INS, its 13-digit NIR, the login).
    """
    problems: list[str] = []
    if len(password) < PASSWORD_MIN:
        problems.append(f"the password must have at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        problems.append(f"the password must have at most {PASSWORD_MAX} characters")
    classes = {
        "lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other" for c in password
    }
    if len(classes) < 2:
        problems.append(
            "the password must mix at least two kinds of characters (lower case, upper case, digits, others)"
        )
    if len(set(password)) < 5:
        problems.append("the password repeats too few different characters")
    compact = re.sub(r"[\s./_-]", "", password).lower()
    for day in birth_dates:
        forms = {day.strftime(f) for f in ("%Y%m%d", "%d%m%Y", "%y%m%d", "%d%m%y")}
        if any(form in compact for form in forms):
            problems.append("the password must not contain a birth date")
            break
    for raw in identifiers:
        ident = re.sub(r"[\s./_-]", "", raw).lower()
        candidates = {ident, ident[:13]} if re.fullmatch(r"[0-9ab]{15}", ident) else {ident}
        if any(len(c) >= 4 and c in compact for c in candidates):
            problems.append("the password must not contain your INS or login")
            break
    return problems


def check_password(password: str, *, birth_dates: Iterable[dt.date] = (), identifiers: Iterable[str] = ()) -> None:
    """``Invalid`` (422) listing what is wrong with a password."""
    problems = password_problems(password, birth_dates=birth_dates, identifiers=identifiers)
    if problems:
        raise Invalid(
            "the password is too weak",
            problems=[Problem(p, "password", IssueCode.BUSINESS_RULE) for p in problems],
            unprocessable=True,
        )


def hash_password(password: str) -> str:
    return hasher.hash(password)


def _verify_password(stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def _spend_password_time(password: str) -> None:
    """Verify against a throw-away hash: an unknown or locked account answers as slowly as a known one."""
    _verify_password(_dummy_hash(), password)


# ---------------------------------------------------------------------------------------- TOTP
def new_totp_secret() -> str:
    """A fresh TOTP secret: 160 random bits, base32 (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def provisioning_uri(secret: str, name: str) -> str:
    """The ``otpauth://totp/…`` URI an authenticator app reads (as a QR code)."""
    return _totp(secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)


def totp_step(secret: str, code: str, now: dt.datetime, last_step: int) -> int | None:
    """The time step a TOTP code belongs to (current one ± 1), or None: wrong, or already used."""
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(rf"\d{{{TOTP_DIGITS}}}", code):
        return None
    totp = _totp(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step if step > last_step else None
    return None


def _totp_key(kek: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_TOTP_CONTEXT).derive(kek))


def _totp_aad(account_id: uuid.UUID, kid: str) -> bytes:
    return f"carnet:totp:v1|{account_id}|{kid}".encode()


def encrypt_totp_secret(settings: Settings, account_id: uuid.UUID, secret: str) -> bytes:
    """``0x01 || len(kid) || kid || nonce(12) || AES-GCM(secret)``, under the active key-encryption key."""
    kid, kek = settings.key_encryption_keys()[0]
    nonce = secrets.token_bytes(12)
    sealed = _totp_key(kek).encrypt(nonce, secret.encode("ascii"), _totp_aad(account_id, kid))
    kid_bytes = kid.encode()
    return _TOTP_FORMAT + bytes([len(kid_bytes)]) + kid_bytes + nonce + sealed


def decrypt_totp_secret(settings: Settings, account_id: uuid.UUID, blob: bytes) -> str | None:
    """The TOTP secret, or None when it cannot be read (unknown key, tampered, another account's)."""
    if len(blob) < 2 or blob[:1] != _TOTP_FORMAT:
        return None
    size = blob[1]
    kid = blob[2 : 2 + size].decode(errors="replace")
    rest = blob[2 + size :]
    kek = dict(settings.key_encryption_keys()).get(kid)
    if kek is None or len(rest) < 12 + 16:
        return None
    try:
        return _totp_key(kek).decrypt(rest[:12], rest[12:], _totp_aad(account_id, kid)).decode("ascii")
    except (InvalidTag, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------------------------------- one-time codes
def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    """``ABCDE-FGHJK``: how a code is printed (the dash and spaces are ignored when typed back)."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def normalise_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").upper()


def _code_hash(work: Work, purpose: Purpose, code: str) -> str:
    return "hmac-sha256:" + work.store.indexer.digest(f"one-time-code:{purpose.value}", normalise_code(code)).hex()


def _live_codes(work: Work, purpose: Purpose, target: Target) -> list[OneTimeCode]:
    query = sa.select(OneTimeCode).where(
        OneTimeCode.purpose == purpose.value,
        OneTimeCode.used_at.is_(None),
        OneTimeCode.expires_at > work.now,
        OneTimeCode.attempts < MAX_CODE_ATTEMPTS,
    )
    if purpose is Purpose.ACTIVATION and target.record is not None:
        query = query.where(OneTimeCode.record_id == target.record.id)
    elif target.account is not None:
        query = query.where(OneTimeCode.account_id == target.account.id)
    else:
        return []
    return list(work.session.scalars(query.order_by(OneTimeCode.created_at.desc())).all())


def _matching_code(work: Work, purpose: Purpose, target: Target, code: str) -> OneTimeCode | None:
    wanted = _code_hash(work, purpose, code)
    found = None
    for row in _live_codes(work, purpose, target):
        if hmac.compare_digest(row.code_hash, wanted):
            found = row
    return found


def _spend_codes(work: Work, purpose: Purpose, target: Target) -> None:
    for row in _live_codes(work, purpose, target):
        row.used_at = work.now


def _issue(
    work: Work, purpose: Purpose, *, ttl: dt.timedelta, record_id: uuid.UUID | None, account_id: uuid.UUID | None
) -> IssuedCode:
    code = new_code()
    row = OneTimeCode(
        purpose=purpose.value,
        account_id=account_id,
        record_id=record_id,
        code_hash=_code_hash(work, purpose, code),
        attempts=0,
        expires_at=work.now + ttl,
        created_at=work.now,
    )
    work.session.add(row)
    work.session.flush()
    return IssuedCode(code=code, expires_at=row.expires_at, account_id=account_id, record_id=record_id)


def issue_activation_code(
    work: Work,
    *,
    record_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    ttl: dt.timedelta | None = None,
) -> IssuedCode:
    """A new activation code for a patient's record or a representative's account (earlier ones die).

    A patient account is activated through its record (the patient proves the INS and birth date);
    a representative's account through the account itself. ``ttl``: its validity, by default
    ``CARNET_ACTIVATION_CODE_DAYS`` (an announced record's provisional code lasts its opposition window
    and that much more).
    """
    if (record_id is None) == (account_id is None):
        raise ValueError("an activation code is for a record or for an account")
    if account_id is not None:
        account = work.session.get(Account, account_id)
        if account is None or not account.active or account.kind not in PERSON_KINDS:
            raise ValueError("no active patient or legal-representative account has this id")
        if account.record_id is not None:  # a patient account: activated through its record
            record_id, account_id = account.record_id, None
    record = records.get_record(work, record_id) if record_id is not None else None
    if record_id is not None and record is None:
        raise ValueError("no record has this id")
    if record is not None:
        holder = work.session.scalar(sa.select(Account).where(Account.record_id == record.id))
        if holder is not None and not holder.active:
            raise ValueError("the patient's account is disabled")
    target = Target(record=record, account=work.session.get(Account, account_id) if account_id else None)
    _spend_codes(work, Purpose.ACTIVATION, target)
    return _issue(
        work,
        Purpose.ACTIVATION,
        ttl=ttl or dt.timedelta(days=work.settings.activation_code_days),
        record_id=record_id,
        account_id=account_id,
    )


def issue_reset_code(work: Work, account_id: uuid.UUID) -> IssuedCode:
    """A new password-reset code for an account with confirmed credentials (earlier ones die)."""
    account = work.session.get(Account, account_id)
    credential = work.session.get(Credential, account_id)
    if account is None or not account.active or credential is None or credential.totp_last_step == 0:
        raise ValueError("this account has no activated credentials: issue an activation code instead")
    _spend_codes(work, Purpose.RESET, Target(record=None, account=account))
    return _issue(
        work,
        Purpose.RESET,
        ttl=dt.timedelta(seconds=work.settings.reset_code_seconds),
        record_id=None,
        account_id=account_id,
    )


# ---------------------------------------------------------------------------------------- who is it
def _parse_ins(value: str) -> Ins | None:
    """An INS matricule typed by a person (spaces allowed; format and key checked), or None. Its
    system does not matter: records are indexed by the matricule alone."""
    try:
        return parse_ins(f"urn:oid:{INS_NIR_OID}", re.sub(r"[\s.-]", "", value), allow_test=True)
    except IdentifierError:
        return None


def account_by_login(work: Work, login: str) -> Account | None:
    """The patient or representative account a login names: its id, or a label no other account carries."""
    login = (login or "").strip()
    if not login:
        return None
    try:
        account = work.session.get(Account, uuid.UUID(login))
    except ValueError:
        matches = work.session.scalars(
            sa.select(Account).where(Account.label == login, Account.kind.in_(PERSON_KINDS)).limit(2)
        ).all()
        account = matches[0] if len(matches) == 1 else None
    if account is None or not account.active or account.kind not in PERSON_KINDS:
        return None
    return account


def find_target(work: Work, *, ins: str | None, login: str | None) -> Target:
    """The record and account an INS (patients) or a login (anyone) designates; both None if nothing."""
    if ins:
        parsed = _parse_ins(ins)
        record = records.find_by_ins(work, parsed) if parsed is not None else None
        if record is None:
            return Target(None, None)
        account = work.session.scalar(sa.select(Account).where(Account.record_id == record.id))
        if account is not None and (not account.active or account.kind != AccountKind.PATIENT.value):
            return Target(None, None)  # a disabled account signs in no more, nor activates again
        return Target(record, account)
    if login:
        account = account_by_login(work, login)
        if account is None:
            return Target(None, None)
        record = records.get_record(work, account.record_id) if account.record_id else None
        return Target(record, account)
    return Target(None, None)


def trace_sign_in(
    work: Work,
    action: TraceAction,
    target: Target,
    *,
    identifier: str | None,
    outcome: Outcome = Outcome.SUCCESS,
    detail: str | None = None,
    account_id: uuid.UUID | None = None,
) -> None:
    """Trace a sign-in event: on the patient's record when the account is known (it shows in their
    history), else on a chain keyed by a digest of what was typed (never the INS or login in clear)."""
    account = target.account
    if account is None and account_id is not None:
        account = work.session.get(Account, account_id)
    if account is not None:
        kind = ActorKind.REPRESENTATIVE if account.kind == AccountKind.REPRESENTATIVE.value else ActorKind.PATIENT
        actor = Actor(kind=kind, key=f"account:{account.id}", display="")
        record: uuid.UUID | None = account.record_id if kind is ActorKind.PATIENT else None
    else:
        digest = hashlib.sha256((identifier or "").encode()).hexdigest()[:32]
        actor = Actor(kind=ActorKind.PATIENT, key=f"unknown:{digest}", display="")
        record = None
    audit.trace(work, action, actor, record=record, outcome=outcome, detail=detail)


def birth_date_of(work: Work, record: Record) -> dt.date | None:
    """The birth date of the record's patient (from the encrypted Patient resource)."""
    stored = work.store.current(record, records.PATIENT, str(record.id))
    if stored is None:
        return None
    value = orjson.loads(stored.body).get("birthDate")
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None  # a partial date (year or year-month) proves nothing


def proving_birth_dates(work: Work, target: Target) -> list[dt.date]:
    """The birth dates that prove a person's identity: their own record's, else their represented children's."""
    if target.record is not None:
        own = birth_date_of(work, target.record)
        return [own] if own else []
    if target.account is None:
        return []
    found: list[dt.date] = []
    for record_id in accounts.represented_records(work, target.account.id):
        record = records.get_record(work, record_id)
        day = birth_date_of(work, record) if record is not None else None
        if day is not None:
            found.append(day)
    return found


def _credential_for_update(work: Work, account: Account | None) -> Credential | None:
    if account is None:
        return None
    return work.session.scalar(sa.select(Credential).where(Credential.account_id == account.id).with_for_update())


# ---------------------------------------------------------------------------------------- throttling
def throttled(work: Work, source: str) -> bool:
    """Whether this source address failed too often in the last minute."""
    count = work.session.scalar(
        sa.select(sa.func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.source == source[:64], LoginAttempt.at > work.now - SOURCE_WINDOW)
    )
    return int(count or 0) >= work.settings.source_max_failures_per_minute


def _source_failed(work: Work, source: str) -> None:
    source = source[:64]
    work.session.add(LoginAttempt(source=source, at=work.now))
    # Keep the table to what rate limiting reads: this source's older rows, and now and then everyone's.
    work.session.execute(
        sa.delete(LoginAttempt).where(LoginAttempt.source == source, LoginAttempt.at < work.now - SOURCE_WINDOW)
    )
    if secrets.randbelow(100) == 0:
        work.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.at < work.now - 10 * SOURCE_WINDOW))
    work.session.flush()


def _locked(credential: Credential, now: dt.datetime) -> bool:
    return credential.locked_until is not None and credential.locked_until > now


def _account_failed(work: Work, credential: Credential) -> None:
    credential.failed_attempts += 1
    if credential.failed_attempts >= work.settings.login_max_failures:
        credential.locked_until = work.now + dt.timedelta(seconds=work.settings.login_lockout_seconds)
        credential.failed_attempts = 0
        log.warning("patient_account_locked", account=str(credential.account_id))
    credential.updated_at = work.now


def _succeeded(work: Work, credential: Credential, step: int) -> None:
    credential.totp_last_step = step
    credential.failed_attempts = 0
    credential.locked_until = None
    credential.updated_at = work.now


# ---------------------------------------------------------------------------------------- services
def _store_credentials(work: Work, account_id: uuid.UUID, password: str, totp_secret: str, *, last_step: int) -> None:
    credential = work.session.get(Credential, account_id)
    if credential is None:
        credential = Credential(account_id=account_id)
        work.session.add(credential)
    credential.password_hash = hash_password(password)
    credential.totp_secret = encrypt_totp_secret(work.settings, account_id, totp_secret)
    credential.totp_last_step = last_step
    credential.failed_attempts = 0
    credential.locked_until = None
    credential.updated_at = work.now
    work.session.flush()


def set_credentials(work: Work, account_id: uuid.UUID, password: str, totp_secret: str, confirmed: bool = True) -> None:
    """Give an account a password and a TOTP secret directly (the demo loader; tests).

    The password must meet the length and variety rules; ``totp_secret`` is base32. Confirmed
    credentials sign in at once; unconfirmed ones wait for ``confirm_activation``.
    """
    account = work.session.get(Account, account_id)
    if account is None or account.kind not in PERSON_KINDS:
        raise ValueError("no patient or legal-representative account has this id")
    problems = password_problems(password)
    if problems:
        raise ValueError("; ".join(problems))
    try:
        _totp(totp_secret).now()
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise ValueError("the TOTP secret must be base32") from exc
    _store_credentials(
        work, account_id, password, totp_secret.upper(), last_step=CONFIRMED_WITHOUT_CODE if confirmed else 0
    )


def activate(
    work: Work,
    *,
    source: str,
    code: str,
    ins: str | None,
    login: str | None,
    birth_date: dt.date,
    password: str,
) -> Activation:
    """Check an activation code with the INS (or login) and a birth date; set password and TOTP secret.

    The password rules are checked first, against what the request itself carries (no oracle):
    ``Invalid`` when it is too weak, and the code is not spent.
    """
    check_password(password, birth_dates=[birth_date], identifiers=[x for x in (ins, login) if x])
    if throttled(work, source):
        return Activation(Status.THROTTLED)
    target = find_target(work, ins=ins, login=login)
    row = _matching_code(work, Purpose.ACTIVATION, target, code)
    if row is None:
        _source_failed(work, source)
        trace_sign_in(
            work,
            TraceAction.ACCOUNT_ACTIVATION,
            target,
            identifier=ins or login,
            outcome=Outcome.FAILURE,
            detail="code",
        )
        return Activation(Status.FAILED)
    if birth_date not in proving_birth_dates(work, target):
        row.attempts += 1
        _source_failed(work, source)
        trace_sign_in(
            work,
            TraceAction.ACCOUNT_ACTIVATION,
            target,
            identifier=ins or login,
            outcome=Outcome.FAILURE,
            detail="birth-date",
        )
        return Activation(Status.FAILED)
    row.used_at = work.now
    _spend_codes(work, Purpose.ACTIVATION, target)
    account = target.account
    if account is None:
        assert target.record is not None  # a code for an account always finds the account
        account = accounts.create_account(work, kind=AccountKind.PATIENT, label="patient", record_id=target.record.id)
    secret = new_totp_secret()
    _store_credentials(work, account.id, password, secret, last_step=0)
    sessions.revoke_all(work, account.id)
    trace_sign_in(work, TraceAction.ACCOUNT_ACTIVATION, Target(target.record, account), identifier=None)
    if target.record is not None and target.record.is_announced:
        # Activating one's space during the opposition window is choosing it: the record opens now.
        from carnet.records import lifecycle  # noqa: PLC0415 - the lifecycle issues codes through this module

        lifecycle.open_record(
            work,
            actor=Actor(kind=ActorKind.PATIENT, key=f"account:{account.id}", display="", own_record=target.record.id),
            record=target.record,
            detail="activation",
        )
    log.info("patient_account_activated", account=str(account.id))
    return Activation(
        Status.OK,
        account_id=account.id,
        totp_secret=secret,
        otpauth_uri=provisioning_uri(secret, account.label if account.label != "patient" else str(account.id)[:8]),
    )


def confirm_activation(work: Work, *, source: str, ins: str | None, login: str | None, totp: str) -> Status:
    """Prove the authenticator works: a first valid TOTP code confirms the credentials."""
    if throttled(work, source):
        return Status.THROTTLED
    target = find_target(work, ins=ins, login=login)
    credential = _credential_for_update(work, target.account)
    if credential is None or credential.totp_last_step != 0 or _locked(credential, work.now):
        _source_failed(work, source)
        return Status.FAILED
    secret = decrypt_totp_secret(work.settings, credential.account_id, credential.totp_secret)
    step = totp_step(secret, totp, work.now, credential.totp_last_step) if secret else None
    if step is None:
        _account_failed(work, credential)
        _source_failed(work, source)
        return Status.FAILED
    _succeeded(work, credential, step)
    work.session.flush()
    return Status.OK


def login(
    work: Work,
    *,
    source: str,
    ins: str | None,
    login: str | None,
    password: str,
    totp: str,
    user_agent: str = "",
) -> SignIn:
    """Password + TOTP sign-in; on success a new session (its token goes into the cookie)."""
    if throttled(work, source):
        return SignIn(Status.THROTTLED)
    target = find_target(work, ins=ins, login=login)
    credential = _credential_for_update(work, target.account)
    if credential is None or _locked(credential, work.now):
        _spend_password_time(password)
        _source_failed(work, source)
        trace_sign_in(
            work,
            TraceAction.LOGIN_FAILURE,
            target,
            identifier=ins or login,
            outcome=Outcome.FAILURE,
            detail="locked" if credential is not None else "unknown",
        )
        return SignIn(Status.FAILED)
    password_ok = _verify_password(credential.password_hash, password)
    if password_ok and credential.totp_last_step == 0:
        return SignIn(Status.UNCONFIRMED)  # told only to whoever knows the password
    secret = decrypt_totp_secret(work.settings, credential.account_id, credential.totp_secret)
    step = totp_step(secret, totp, work.now, credential.totp_last_step) if secret else None
    if not password_ok or step is None:
        _account_failed(work, credential)
        _source_failed(work, source)
        trace_sign_in(
            work,
            TraceAction.LOGIN_FAILURE,
            target,
            identifier=ins or login,
            outcome=Outcome.FAILURE,
            detail="password" if not password_ok else "totp",
        )
        return SignIn(Status.FAILED)
    _succeeded(work, credential, step)
    if hasher.check_needs_rehash(credential.password_hash):
        credential.password_hash = hash_password(password)
    account_id = credential.account_id
    token = sessions.create_session(work, account_id, user_agent=user_agent)
    trace_sign_in(work, TraceAction.LOGIN, target, identifier=None, account_id=account_id, detail="password+totp")
    return SignIn(Status.OK, account_id=account_id, session_token=token)


def request_reset(work: Work, *, source: str, ins: str | None, login: str | None, birth_date: dt.date) -> ResetRequest:
    """Issue a reset code when the INS (or login) and birth date match an activated account.

    The code is sent, in this transaction's outbox, by e-mail and/or SMS to the account's own contacts
    (``carnet.notifications.reset_code``; nothing is sent when it has none). It is never returned: the
    caller answers the same whatever happened.
    """
    if throttled(work, source):
        return ResetRequest(Status.THROTTLED)
    target = find_target(work, ins=ins, login=login)
    account = target.account
    credential = work.session.get(Credential, account.id) if account is not None else None
    if (
        account is None
        or credential is None
        or credential.totp_last_step == 0
        or birth_date not in proving_birth_dates(work, target)
    ):
        _source_failed(work, source)
        return ResetRequest(Status.FAILED)
    recent = work.session.scalar(
        sa.select(sa.func.count())
        .select_from(OneTimeCode)
        .where(
            OneTimeCode.purpose == Purpose.RESET.value,
            OneTimeCode.account_id == account.id,
            OneTimeCode.created_at > work.now - RESET_REQUEST_COOLDOWN,
        )
    )
    if recent:
        return ResetRequest(Status.OK, account_id=account.id)  # one code a minute is plenty
    issued = issue_reset_code(work, account.id)
    event = reset_code.send(work, account=account, code=format_code(issued.code), expires_at=issued.expires_at)
    return ResetRequest(Status.OK, account_id=account.id, notified=event is not None)


@dataclass(frozen=True, slots=True)
class Opposition:
    status: Status
    record: Record | None = None
    # The code and birth date were right but the record is not in its opposition window (open, closed,
    # already objected to): told to whoever proved who they are.
    too_late: bool = False


def oppose(work: Work, *, source: str, code: str, ins: str, birth_date: dt.date) -> Opposition:
    """Object to an announced record with its provisional code, the INS and the birth date (no account
    needed: reference/dmp.md §5, "objection channels"). The record closes with reason OPPOSITION and its
    content is destroyed (``carnet.records.lifecycle.oppose``); the code is spent.

    Failures answer like activation's: one generic status, counted per source address.
    """
    from carnet.records import lifecycle  # noqa: PLC0415 - the lifecycle issues codes through this module

    if throttled(work, source):
        return Opposition(Status.THROTTLED)
    target = find_target(work, ins=ins, login=None)
    row = _matching_code(work, Purpose.ACTIVATION, target, code) if target.record is not None else None
    if row is None or target.record is None:
        _source_failed(work, source)
        trace_sign_in(work, TraceAction.RECORD_OPPOSE, target, identifier=ins, outcome=Outcome.FAILURE, detail="code")
        return Opposition(Status.FAILED)
    if birth_date not in proving_birth_dates(work, target):
        row.attempts += 1
        _source_failed(work, source)
        trace_sign_in(
            work, TraceAction.RECORD_OPPOSE, target, identifier=ins, outcome=Outcome.FAILURE, detail="birth-date"
        )
        return Opposition(Status.FAILED)
    record = target.record
    if not record.is_announced:
        return Opposition(Status.FAILED, record=record, too_late=True)
    row.used_at = work.now
    _spend_codes(work, Purpose.ACTIVATION, target)
    actor = Actor(kind=ActorKind.PATIENT, key=f"patient:{record.id}", display="", own_record=record.id)
    lifecycle.oppose(work, actor=actor, record=record)
    return Opposition(Status.OK, record=record)


def confirm_reset(
    work: Work,
    *,
    source: str,
    code: str,
    ins: str | None,
    login: str | None,
    new_password: str,
    totp: str,
) -> Status:
    """Set a new password with a reset code and a TOTP code; signs out everywhere and lifts a lockout.

    The password rules that involve the person's birth dates are checked once the code and TOTP are
    known good (``Invalid``; nothing is spent), the others before anything else.
    """
    check_password(new_password, identifiers=[x for x in (ins, login) if x])
    if throttled(work, source):
        return Status.THROTTLED
    target = find_target(work, ins=ins, login=login)
    credential = _credential_for_update(work, target.account)
    row = _matching_code(work, Purpose.RESET, target, code) if credential is not None else None
    if credential is None or row is None:
        _source_failed(work, source)
        return Status.FAILED
    secret = decrypt_totp_secret(work.settings, credential.account_id, credential.totp_secret)
    step = totp_step(secret, totp, work.now, credential.totp_last_step) if secret else None
    if step is None:
        row.attempts += 1
        _source_failed(work, source)
        return Status.FAILED
    check_password(new_password, birth_dates=proving_birth_dates(work, target))
    row.used_at = work.now
    _spend_codes(work, Purpose.RESET, target)
    credential.password_hash = hash_password(new_password)
    _succeeded(work, credential, step)
    sessions.revoke_all(work, credential.account_id)
    work.session.flush()
    trace_sign_in(work, TraceAction.PASSWORD_RESET, target, identifier=None, account_id=credential.account_id)
    log.info("patient_password_reset", account=str(credential.account_id))
    return Status.OK
