"""``create_app(settings)``: the ASGI application — FHIR API, health endpoints, error mapping."""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carnet import __version__
from carnet.audit import routes as audit_routes
from carnet.audit.trace import CURRENT_REQUEST, Interface, RequestInfo
from carnet.auth import oidc, patient_routes, smart, tokens
from carnet.auth.certificates import client_address
from carnet.config import Settings, get_settings
from carnet.errors import CarnetError, IssueCode, Problem
from carnet.fhir.outcomes import error_response, outcome_response
from carnet.fhir.resources import (
    audit,
    binary,
    consent,
    directory,
    documents,
    lists,
    metadata,
    patient,
    transaction,
)
from carnet.logging import configure, log
from carnet.notifications import routes as notifications
from carnet.portal import routes as portal_routes
from carnet.portal.deps import LoginRequired
from carnet.portal.patient import router as patient_portal
from carnet.portal.pro.routes import router as pro_portal
from carnet.runtime import Runtime
from carnet.storage.blobs import BlobCorrupted

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def _interface(path: str) -> Interface:
    if path.startswith("/auth") or path.startswith("/.well-known"):
        return Interface.AUTH
    return Interface.PORTAL


class Envelope:
    """Pure ASGI middleware: request id, security headers and one log line per request (no body access,
    so streaming and performance are untouched)."""

    def __init__(self, app: ASGIApp, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        forwarded: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
            elif name == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        client = scope.get("client")
        path: str = scope["path"]
        # Who is asking, from where, through which interface: stamped on every trace of the request.
        context = CURRENT_REQUEST.set(
            RequestInfo(
                interface=Interface.FHIR if path.startswith("/fhir") else _interface(path),
                source=client_address(client[0] if client else None, forwarded, self.trusted_proxies),
                request_id=request_id,
            )
        )
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers.extend(h for h in self.extra if h[0] not in present)
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            CURRENT_REQUEST.reset(context)
            route = scope.get("route")
            log.info(
                "request",
                method=scope["method"],
                route=getattr(route, "path", "?"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
                request_id=request_id,
            )


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure(settings.log_level, json=settings.log_json)
    runtime = runtime or Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        # Everything loaded at start-up (modules, mappers, FHIR models, value sets) lives as long as the
        # process: move it out of the garbage collector's reach so full collections stay short.
        gc.collect()
        gc.freeze()
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="Carnet",
        version=__version__,
        description="Patient-controlled shared health record: FHIR R4 / IHE MHD (ANS PDSm).",
        # The interactive API description is a development aid (its page loads scripts from a CDN, which
        # the portals' Content-Security-Policy forbids): not served in production, where the FHIR
        # CapabilityStatement (/fhir/metadata) describes the API.
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
        openapi_url=None if settings.is_production else "/openapi.json",
    )
    app.state.runtime = runtime

    app.add_middleware(Envelope, trusted_proxies=tuple(settings.trusted_proxies))

    @app.exception_handler(CarnetError)
    async def carnet_error(request: Request, exc: CarnetError) -> Response:
        if portal_routes.is_portal_path(request.url.path):
            return portal_routes.error_page(request, settings, exc)
        return error_response(exc)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return portal_routes.error_page(request, settings, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = IssueCode.NOT_FOUND if exc.status_code == 404 else IssueCode.NOT_SUPPORTED
        detail = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return outcome_response(exc.status_code, [Problem(detail, code=code)])

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            Problem(str(e.get("msg")), ".".join(str(p) for p in e.get("loc", ())), IssueCode.INVALID)
            for e in exc.errors()
        ]
        return outcome_response(400, problems)

    @app.exception_handler(BlobCorrupted)
    async def corrupted(request: Request, exc: BlobCorrupted) -> Response:
        log.error("blob_corrupted", error=str(exc))
        return outcome_response(
            500, [Problem("the stored document failed its integrity check", code=IssueCode.EXCEPTION)]
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled", error_type=type(exc).__name__)
        return outcome_response(500, [Problem("internal error", code=IssueCode.EXCEPTION)])

    @app.get("/health/live", tags=["Health"])
    async def live() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/health/ready", tags=["Health"])
    def ready() -> Response:
        try:
            with runtime.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/.well-known/jwks.json", tags=["Auth"])
    async def jwks() -> Response:
        """The public keys that verify Carnet access tokens (several during a key rotation)."""
        return JSONResponse(tokens.public_jwks(settings))

    # The FHIR API first, its hottest routes leading: FastAPI matches a path against the routes in order,
    # and each route it tries costs a few microseconds (about 2 ms per request when the portals' ~90
    # routes were tried before the FHIR ones).
    for router in (
        documents.router,
        binary.router,
        transaction.router,
        lists.router,
        patient.router,
        consent.router,
        audit.router,
        directory.router,
        metadata.router,
    ):
        app.include_router(router, prefix="/fhir")
    for auth_router in (oidc.router, smart.router, patient_routes.router):
        app.include_router(auth_router)
    app.include_router(notifications.router)  # the notification centre, preferences, the dev mailbox
    app.include_router(audit_routes.router)  # the patient's history: who accessed the record
    # The portals: server-rendered pages over the same services; their static files (CSS, htmx).
    app.include_router(portal_routes.router)
    app.include_router(patient_portal)  # the patient portal (/patient)
    app.include_router(pro_portal)  # the professional portal (/pro)
    app.mount("/static", StaticFiles(packages=[("carnet.portal", "static")]), name="static")
    return app
