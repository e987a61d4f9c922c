"""The landing page in a real browser: French by default, English on demand, accessible, no script
or style blocked by the Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import ConsoleMessage, Page


def test_landing_page_in_french_then_english(patient_page: Page, check_page: Callable[[Page, str], None]) -> None:
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    patient_page.on("console", on_console)
    patient_page.goto("/")
    assert patient_page.locator("h1").inner_text() == "Carnet, votre dossier de santé partagé"
    assert patient_page.locator("html").get_attribute("lang") == "fr"
    check_page(patient_page, "landing-fr")
    patient_page.select_option("#lang-select", "en")
    patient_page.get_by_role("button", name="Changer").click()
    patient_page.wait_for_url("**/")
    assert patient_page.locator("h1").inner_text() == "Carnet, your shared health record"
    assert patient_page.locator("html").get_attribute("lang") == "en"
    check_page(patient_page, "landing-en")
    assert problems == []  # the CSP blocked nothing: no inline script or style anywhere


def test_landing_page_fits_a_phone(patient_page: Page, check_page: Callable[[Page, str], None]) -> None:
    patient_page.set_viewport_size({"width": 360, "height": 740})
    patient_page.goto("/")
    width = patient_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways on a 360 px phone ({width} px)"
    check_page(patient_page, "landing-phone")
