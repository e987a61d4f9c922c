"""The professional directory: organisations, practitioners and their roles (global reference data).

Directory data is public in France (the RPPS/FINESS annuaire), so it is stored in clear, outside the
patient partition. The FHIR resource as imported is kept in ``resource`` (JSON text).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    idnat_struct: Mapped[str] = mapped_column(sa.String(40), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    facility_type: Mapped[str | None] = mapped_column(sa.String(40))  # TRE_R02 secteur d'activité
    practice_setting: Mapped[str | None] = mapped_column(sa.String(40))  # TRE_A01 cadre d'exercice
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resource: Mapped[str] = mapped_column(sa.Text())


class Practitioner(Base):
    __tablename__ = "practitioners"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    idnat_ps: Mapped[str] = mapped_column(sa.String(40), unique=True)
    rpps: Mapped[str | None] = mapped_column(sa.String(11), index=True)
    family: Mapped[str] = mapped_column(sa.String(120))
    given: Mapped[str | None] = mapped_column(sa.String(120))
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resource: Mapped[str] = mapped_column(sa.Text())


class PractitionerRole(Base):
    """A practitioner's exercise: profession (TRE_G15), specialty (TRE_R01) and organisation."""

    __tablename__ = "practitioner_roles"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    practitioner_id: Mapped[str] = mapped_column(sa.ForeignKey("practitioners.id"), index=True)
    organization_id: Mapped[str | None] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    profession_code: Mapped[str] = mapped_column(sa.String(8))
    specialty_code: Mapped[str | None] = mapped_column(sa.String(16))
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resource: Mapped[str] = mapped_column(sa.Text())
