"""What the browser tests share: fresh TOTP codes, signing in through the pages, console watching, the
sideways-scroll and focus checks, and what a frame shows (a PDF in Chromium's viewer, its pixels)."""

from __future__ import annotations

import dataclasses
import re
import struct
import time
import zlib

import pyotp
from playwright.sync_api import ConsoleMessage, Frame, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError

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


# ---------------------------------------------------------------------------------------------- what a frame shows
def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB pixels of a PNG as Chromium writes screenshots (8-bit RGB or RGBA, not
    interlaced): just enough decoding to look at what a page shows, with no imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, width, height, channels = 8, [], 0, 0, 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8, depth
            assert colour in (2, 6), colour  # RGB or RGBA
            assert interlace == 0, interlace
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(chunk)
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    rows: list[bytes] = []
    at = 0
    for _ in range(height):
        method, line = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        at += 1 + stride
        if method == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous, strict=True))
        for x in range(stride if method in (1, 3, 4) else 0):  # undo the row's filter (sub, average, Paeth)
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            if method == 1:
                line[x] = (line[x] + left) & 255
            elif method == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif method == 4:
                corner = previous[x - channels] if x >= channels else 0
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line) if channels == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
        previous = line
    assert len(rows) == height
    return width, height, rows


def light_and_dark_shares(png: bytes) -> tuple[float, float]:
    """The shares of near-white and of dark pixels of a screenshot (one pixel in four, each way)."""
    width, _, rows = png_pixels(png)
    light = dark = total = 0
    for row in rows[::4]:
        for x in range(0, width * 3, 12):
            low, high = min(row[x : x + 3]), max(row[x : x + 3])
            light += low >= 235
            dark += high <= 90
            total += 1
    return light / max(1, total), dark / max(1, total)


def pdf_viewer(page: Page, name: str | re.Pattern[str], *, timeout: float = 45.0) -> Frame:
    """The frame of Chromium's PDF viewer once it has opened the file ``name`` (its title: the file name the
    ``Content-Disposition`` gives, or a pattern it matches). ``timeout`` is a readiness guard: under a
    full test run on two cores Chromium's viewer extension was once seen not to appear within 15 s."""
    deadline = time.monotonic() + timeout
    titles: list[str] = []
    while time.monotonic() < deadline:
        titles = []
        for frame in page.frames:
            if frame.url.startswith("chrome-extension://"):
                try:
                    title = str(frame.evaluate("document.title"))
                except PlaywrightError:
                    title = ""  # the viewer is still loading (or reloading)
                titles.append(title)
                if title == name if isinstance(name, str) else name.fullmatch(title):
                    return frame
        time.sleep(0.25)
    raise AssertionError(f"Chromium's PDF viewer did not open {name!r} (viewer titles: {titles})")


def assert_pdf_shown(page: Page, frame: Locator, name: str | re.Pattern[str], *, timeout: float = 45.0) -> None:
    """The frame shows the PDF ``name``: the framed document is a PDF (not an error page: a refused frame is
    ``text/html``), Chromium's PDF viewer has opened it, and the frame is not empty — a white page on the
    viewer's dark background, in its pixels."""
    expect(frame).to_be_visible()
    handle = frame.element_handle()
    content = handle.content_frame() if handle is not None else None
    assert content is not None, "the frame holds no document"
    assert content.evaluate("document.contentType") == "application/pdf", content.url
    pdf_viewer(page, name, timeout=timeout)
    deadline = time.monotonic() + timeout
    light = dark = 0.0
    while time.monotonic() < deadline:
        light, dark = light_and_dark_shares(frame.screenshot())
        if light >= 0.1 and dark >= 0.1:
            return
        time.sleep(0.5)
    raise AssertionError(f"the PDF frame looks empty: {light:.0%} white, {dark:.0%} dark")
