"""What the browser tests share: fresh TOTP codes, signing in through the pages, console watching, the
sideways-scroll and focus checks."""

from __future__ import annotations

import dataclasses
import re
import time

import pyotp
from playwright.sync_api import ConsoleMessage, Locator, Page, expect

TOTP_INTERVAL = 30
_last_step: dict[str, int] = {}


def fresh_code(secret: str) -> str:
    """A TOTP code Carnet accepts now and has not seen yet: a time step after the last one this process used
    for ``secret`` (the server refuses a step twice), among those it accepts (the current one ± 1); waits for
    the clock when both were spent."""
    totp = pyotp.TOTP(secret)
    while True:
        current = int(time.time() // TOTP_INTERVAL)
        step = max(current, _last_step.get(secret, -1) + 1)
        if step <= current + 1:
            _last_step[secret] = step
            return str(totp.generate_otp(step))
        time.sleep((current + 1) * TOTP_INTERVAL - time.time() + 0.2)


def spent(secret: str, code: str) -> None:
    """Remember that ``code`` was used outside :func:`fresh_code` (e.g. the first code of an enrolment)."""
    totp = pyotp.TOTP(secret)
    current = int(time.time() // TOTP_INTERVAL)
    for step in (current - 1, current, current + 1):
        if totp.generate_otp(step) == code:
            _last_step[secret] = max(step, _last_step.get(secret, -1))


def field(page: Page, label: str) -> Locator:
    """The form field labelled exactly ``label`` (a required field's label ends with a "*" marker)."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}(\s*\*)?$"))


def patient_sign_in(page: Page, ident: str, password: str, secret: str) -> None:
    """Sign in on the patient portal's page (INS or login, password, the authenticator's code)."""
    page.goto("/patient/connexion")
    field(page, "INS ou identifiant").fill(ident)
    field(page, "Mot de passe").fill(password)
    field(page, "Code de l'application d'authentification").fill(fresh_code(secret))
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(r"/patient/dossiers/[0-9a-f-]{36}$"))


def pro_sign_in(page: Page) -> None:
    """Sign in on the professional portal with the card certificate the context presents."""
    page.goto("/pro/connexion")
    page.get_by_role("button", name="Se connecter avec ma carte").click()
    expect(page).to_have_url(re.compile(r"/pro$"))


def pro_find_patient(page: Page, *, ins: str, system: str, family: str, given: str, birth_date: str) -> None:
    """Look a record up by INS and identity traits on the professional portal's search page."""
    field(page, "INS (matricule, 15 caractères)").fill(ins)
    field(page, "Autorité d'affectation").select_option(system)
    field(page, "Nom de naissance").fill(family)
    field(page, "Premier prénom de naissance").fill(given)
    field(page, "Date de naissance").fill(birth_date)
    page.get_by_role("button", name="Rechercher").click()


# Chromium logs a page answered with an error status (a refused form, "not found") as a console error.
_HTTP_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")


@dataclasses.dataclass
class Console:
    """What the pages reported: errors (a CSP violation is one, an uncaught exception another) and, apart,
    the error statuses pages were answered with (expected where a test provokes them)."""

    errors: list[str] = dataclasses.field(default_factory=list)
    statuses: list[int] = dataclasses.field(default_factory=list)

    def watch(self, page: Page) -> Page:
        def on_console(message: ConsoleMessage) -> None:
            if message.type != "error":
                return
            status = _HTTP_STATUS.match(message.text)
            if status is not None:
                self.statuses.append(int(status.group(1)))
            else:
                self.errors.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page


def scroll_width(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def assert_fits(page: Page, width: int) -> None:
    """No sideways scrolling: the page is no wider than the screen."""
    page.wait_for_load_state()  # after a click, the new page's style sheets may still be on their way
    found = scroll_width(page)
    if found > width:
        wide = page.evaluate(
            """(width) => [...document.querySelectorAll('body *')]
                .filter((el) => el.getBoundingClientRect().right > width + 1 || el.scrollWidth > width + 1)
                .slice(0, 8)
                .map((el) => `${el.tagName.toLowerCase()}.${el.className}#${el.id}: ${el.scrollWidth}`)""",
            width,
        )
        raise AssertionError(f"{page.url} scrolls sideways on a {width} px screen ({found} px): {wide}")


def focused(page: Page) -> dict[str, str]:
    """The element holding the keyboard focus: its tag, text, classes and outline."""
    value: dict[str, str] = page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return {
                tag: el.tagName.toLowerCase(),
                text: (el.innerText || el.value || el.getAttribute('aria-label') || '').trim(),
                id: el.id || '',
                classes: el.className || '',
                outline: style.outlineStyle + ' ' + style.outlineWidth,
                focusVisible: String(el.matches(':focus-visible')),
            };
        }"""
    )
    return value


def tab_to(page: Page, text: str, *, limit: int = 60) -> dict[str, str]:
    """Press Tab until the focused element's text (or id) is ``text``; its description (fails after ``limit``
    presses)."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        element = focused(page)
        if text in (element["text"], element["id"]):
            return element
        seen.append(element["text"][:40])
    raise AssertionError(f"Tab never reached {text!r}; it went through {seen}")


def assert_focus_visible(element: dict[str, str]) -> None:
    """The focused element shows it: a visible outline (the portals' 3 px focus ring)."""
    assert element["focusVisible"] == "true", element
    style, width = element["outline"].split(" ", 1)
    assert style != "none", element
    assert float(width.removesuffix("px")) >= 2, element
