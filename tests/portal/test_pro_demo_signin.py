"""The development-only sign-in of the professional portal (``make run`` serves plain HTTP, where no card
certificate can reach Carnet): a demo professional signs in from the login page. In any other environment
the form is not offered and the route answers 404."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carnet.deps import PRO_TOKEN_COOKIE
from carnet.runtime import Runtime
from tests.portal.pro_support import (
    Cards,
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    portal,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
    token,
)

DEMO_LOGIN = "/pro/connexion/demonstration"


@pytest.fixture(scope="module", name="dev_app")
def dev_app_fixture(runtime: Runtime, cards: Cards) -> Iterator[Pro]:
    with portal(runtime, cards, env="development") as app:
        yield app


def test_development_offers_and_performs_the_demo_sign_in(dev_app: Pro) -> None:
    browser = dev_app.browser()
    page = browser.get("/pro/connexion")
    assert page.status_code == 200
    assert 'action="/pro/connexion/demonstration"' in page.text
    assert 'value="dr_medioni"' in page.text
    assert 'value="dominique_patient"' not in page.text  # professionals only

    signed_in = browser.post(
        DEMO_LOGIN, data={"csrf": token(browser), "persona": "dr_medioni", "next": ""}, follow_redirects=False
    )
    assert signed_in.status_code == 303
    assert browser.cookies.get(PRO_TOKEN_COOKIE)
    home = browser.get("/pro")
    assert home.status_code == 200
    assert "Démonstration (sans carte, développement seulement)" in home.text  # the banner says how


def test_the_demo_sign_in_refuses_a_patient_or_an_unknown_key_and_needs_csrf(dev_app: Pro) -> None:
    browser = dev_app.browser()
    for persona in ("dominique_patient", "nobody", ""):
        refused = browser.post(DEMO_LOGIN, data={"csrf": token(browser), "persona": persona}, follow_redirects=False)
        assert refused.status_code == 422
        assert "Choisissez un professionnel de démonstration." in refused.text
        assert not browser.cookies.get(PRO_TOKEN_COOKIE)
    forged = browser.post(DEMO_LOGIN, data={"csrf": "forged", "persona": "dr_medioni"}, follow_redirects=False)
    assert forged.status_code == 403
    assert not browser.cookies.get(PRO_TOKEN_COOKIE)


def test_outside_development_there_is_no_demo_sign_in(pro: Pro) -> None:
    browser = pro.browser()
    page = browser.get("/pro/connexion")
    assert "/pro/connexion/demonstration" not in page.text
    refused = browser.post(DEMO_LOGIN, data={"csrf": token(browser), "persona": "dr_medioni"}, follow_redirects=False)
    assert refused.status_code == 404
    assert not browser.cookies.get(PRO_TOKEN_COOKIE)
