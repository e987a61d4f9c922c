"""Browser tests: the real app served over HTTPS (mutual TLS optional) by uvicorn in a thread, driven by
Debian's Chromium through Playwright.

* ``portal`` (session): the server — a fresh database (PostgreSQL when it answers, the production
  database; SQLite otherwise), migrated, with the whole demo (``carnet demo``: directory, people,
  grants, documents, and the demo patients' password and TOTP secret); a test PKI whose CA verifies
  professionals' card certificates; the base URL.
* ``browser`` (session): Chromium headless (``/usr/bin/chromium``; ``scripts/ensure-chromium``
  installs it).
* ``patient_page`` / ``pro_page(persona)``: a fresh browser context (French), for a professional
  with their card certificate presented in the TLS handshake; ``new_page(persona, **options)`` for
  other context options (``java_script_enabled=False``, a phone's viewport …).
* ``check_page(page, name)``: axe-core finds no serious or critical violation, and a screenshot is
  saved to ``test-artifacts/screenshots/<name>.png``.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from carnet import dbadmin
from carnet.app import create_app
from carnet.auth import pki
from carnet.config import Settings
from carnet.demo.loader import load_demo
from carnet.demo.personas import BY_KEY
from carnet.runtime import Runtime
from carnet.server import TLSH11Protocol
from tests.cli.support import free_port
from tests.conftest import PG_URL, create_pg_database, drop_pg_database, make_settings

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
READY_TIMEOUT = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test shares one server and one Chromium: one xdist group (one worker)."""
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.xdist_group("browser"))


@dataclass(frozen=True)
class Portal:
    base_url: str
    runtime: Runtime
    settings: Settings
    pki_dir: Path
    ca: Path

    def card(self, persona: str) -> pki.Issued:
        """The card certificate of a demo professional (issued on first use)."""
        person = BY_KEY[persona]
        assert person.idnat is not None
        cert = self.pki_dir / f"{person.idnat}.crt"
        if cert.exists():
            return pki.Issued(cert, self.pki_dir / f"{person.idnat}.key")
        return pki.issue_professional(self.pki_dir, idnat=person.idnat, name=person.display)


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium as root (or apt-get install chromium)")
    base = tmp_path_factory.mktemp("portal")
    pki_dir = base / "pki"
    pki_dir.mkdir()
    ca = pki.init_ca(pki_dir)
    server_cert = pki.issue_server(pki_dir)
    name: str | None = None
    if PG_URL is not None:
        name = f"carnet_t_browser_{uuid.uuid4().hex[:8]}"
        url = create_pg_database(name)
    else:
        url = f"sqlite:///{base / 'portal.db'}"
    port = free_port()
    base_url = f"https://127.0.0.1:{port}"
    settings = make_settings(url, base_url=base_url, tls_client_ca=ca.certificate)
    runtime = Runtime(settings)
    dbadmin.upgrade(runtime.engine)
    load_demo(runtime)
    config = uvicorn.Config(
        create_app(settings, runtime),
        host="127.0.0.1",
        port=port,
        http=TLSH11Protocol,
        ssl_certfile=str(server_cert.certificate),
        ssl_keyfile=str(server_cert.key),
        ssl_ca_certs=str(ca.certificate),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not server.started:
        assert thread.is_alive(), "the portal server stopped before it started"
        assert time.monotonic() < deadline, "the portal server did not start in time"
        time.sleep(0.05)
    try:
        yield Portal(base_url, runtime, settings, pki_dir, ca.certificate)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        runtime.dispose()
        if name is not None:
            drop_pg_database(name)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _context(browser: Browser, portal: Portal, **options: Any) -> BrowserContext:
    settings: dict[str, Any] = {"locale": "fr-FR", "viewport": {"width": 1280, "height": 900}, **options}
    context = browser.new_context(
        base_url=portal.base_url,
        ignore_https_errors=True,  # the test PKI's server certificate
        **settings,
    )
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def patient_page(browser: Browser, portal: Portal) -> Iterator[Page]:
    context = _context(browser, portal)
    yield context.new_page()
    context.close()


@pytest.fixture
def pro_page(browser: Browser, portal: Portal) -> Iterator[Callable[[str], Page]]:
    """``pro_page("dr_medioni")``: a context presenting that professional's card certificate."""
    contexts: list[BrowserContext] = []

    def open_for(persona: str) -> Page:
        card = portal.card(persona)
        context = _context(
            browser,
            portal,
            client_certificates=[
                {"origin": portal.base_url, "certPath": str(card.certificate), "keyPath": str(card.key)}
            ],
        )
        contexts.append(context)
        return context.new_page()

    yield open_for
    for context in contexts:
        context.close()


@pytest.fixture
def new_page(browser: Browser, portal: Portal) -> Iterator[Callable[..., Page]]:
    """``new_page(None, java_script_enabled=False)``, ``new_page("dr_medioni", viewport=…)``: a page in a
    context of its own with these options (and, for a professional, their card certificate)."""
    contexts: list[BrowserContext] = []

    def open_page(persona: str | None = None, **options: Any) -> Page:
        if persona is not None:
            card = portal.card(persona)
            options["client_certificates"] = [
                {"origin": portal.base_url, "certPath": str(card.certificate), "keyPath": str(card.key)}
            ]
        context = _context(browser, portal, **options)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def axe() -> Axe:
    return Axe()


def screenshot(page: Page, name: str) -> None:
    """Save the whole page to ``test-artifacts/screenshots/<name>.png`` (axe-core needs JavaScript: a page
    without it is only photographed — the same pages are checked with JavaScript on)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def check_page(axe: Axe) -> Callable[[Page, str], None]:
    """Accessibility (axe-core: no serious or critical violation) and a screenshot of the page."""

    def check(page: Page, name: str) -> None:
        screenshot(page, name)
        results = axe.run(page)
        serious = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
        details = "\n".join(
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}" for v in serious
        )
        assert not serious, f"{name}: accessibility violations\n{details}"

    return check
