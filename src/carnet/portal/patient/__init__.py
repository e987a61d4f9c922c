"""The patient portal (``/patient``): Mon espace santé's web space over Carnet's services.

Sign-in (``signin``), a record's home, history, closure and export (``record``), documents
(``documents``), professionals and confidentiality (``professionals``), notifications
(``notifications``). Pages are server-rendered (``templates/patient/``), work without JavaScript, and
call the same services and access policy as the FHIR API (``common`` resolves who is signed in and
which record a page shows). ``docs/portals.md`` maps each page to its services.
"""

from __future__ import annotations

from fastapi import APIRouter

from carnet.portal.patient import documents, notifications, professionals, record, signin

router = APIRouter(include_in_schema=False)
for _part in (signin.router, notifications.router, documents.router, professionals.router, record.router):
    router.include_router(_part)

__all__ = ["router"]
