"""Access settings taken from the environment, end to end through the HTTP API.

``CARNET_EMERGENCY_MINUTES``: an emergency access (break-glass or regulation) lasts that long, to the
second, then opens nothing. ``CARNET_HABILITATION_MATRIX``: the file replaces the shipped matrix for
reads and searches alike. Each test runs an app whose settings come from the variable (on the session
database), with its own clock (``Work.now``).
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.config import Settings
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api, make_settings, match_ids, set_clock


def _settings_from_environment(api: Api) -> Settings:
    """Settings as a deployment builds them: what make_settings leaves unset comes from CARNET_* variables."""
    return make_settings(api.settings.database_url, blob_backend=api.settings.blob_backend)


def _emergency(api: Api, persona: str, patient_id: str, mode: str) -> tuple[dt.datetime, dt.datetime]:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": mode},
            {"name": "reason", "valueString": "patient inconscient, arrêt cardio-respiratoire"},
        ],
    }
    response = api.post(f"/fhir/Patient/{patient_id}/$emergency-access", persona, body)
    assert response.status_code == 200, response.text
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in response.json()["parameter"]}
    return dt.datetime.fromisoformat(values["start"]), dt.datetime.fromisoformat(values["end"])


def test_a_configured_emergency_duration_is_honoured(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARNET_EMERGENCY_MINUTES", "7")
    settings = _settings_from_environment(api)
    assert settings.emergency_minutes == 7
    runtime = Runtime(settings, engine=api.runtime.engine)
    clock = set_clock(monkeypatch, runtime)
    clock.now = clock.now.replace(microsecond=0)  # the API answers in milliseconds
    with TestClient(create_app(settings, runtime), base_url="http://testserver") as client:
        seven = Api(client, runtime)
        patient_id, ins, system = seven.new_patient(team=())
        doc = seven.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
        for persona, mode in (("dr_blanc", "break-glass"), ("dr_regul", "regulation")):
            start, end = _emergency(seven, persona, patient_id, mode)
            assert (start, end - start) == (clock.now, dt.timedelta(minutes=7)), persona

        def reads() -> dict[str, tuple[int, bool]]:
            return {
                persona: (
                    seven.get(f"/fhir/DocumentReference/{doc}", persona).status_code,
                    doc in match_ids(seven.search(persona, patient=patient_id)),
                )
                for persona in ("dr_blanc", "dr_regul")
            }

        assert reads() == {"dr_blanc": (200, True), "dr_regul": (200, True)}
        clock.advance(minutes=7, seconds=-1)
        assert reads() == {"dr_blanc": (200, True), "dr_regul": (200, True)}  # its last second
        clock.advance(seconds=1)
        assert reads() == {"dr_blanc": (404, False), "dr_regul": (404, False)}  # seven minutes: over
        # A new emergency opens it again, for seven minutes more.
        start, end = _emergency(seven, "dr_blanc", patient_id, "break-glass")
        assert end - start == dt.timedelta(minutes=7)
        assert reads()["dr_blanc"] == (200, True)


def _replacement_matrix(tmp_path: Path) -> Path:
    """The shipped matrix with one more row: pharmacists no longer read consultation reports (11488-4)."""
    shipped = resources.files("carnet.access").joinpath("data", "matrice_habilitation.csv").read_text("utf-8")
    path = tmp_path / "matrice_habilitation.csv"
    row = "21,*,11488-4,deny,provisional,test: consultation reports withheld from pharmacists\n"
    path.write_text(shipped.replace("# version: ", "# version: test-", 1).rstrip("\n") + "\n" + row, "utf-8")
    return path


def test_a_replacement_habilitation_matrix_applies_to_reads_and_searches(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _replacement_matrix(tmp_path)
    monkeypatch.setenv("CARNET_HABILITATION_MATRIX", str(path))
    settings = _settings_from_environment(api)
    assert settings.habilitation_matrix == path
    patient_id, ins, system = api.new_patient()  # ph_didot (pharmacist) and inf_moreau (nurse) in the care team
    report = api.publish("dr_medioni", factories.docref(ins, system, type_code="11488-4")).json()
    other = api.publish("dr_medioni", factories.docref(ins, system, type_code="11490-0")).json()
    docs = {"report": report["id"], "other": other["id"]}
    binary = "/fhir/Binary/" + str(report["content"][0]["attachment"]["url"]).rsplit("/", 1)[1]

    def seen(client_api: Api, persona: str) -> dict[str, object]:
        found = set(match_ids(client_api.search(persona, patient=patient_id, _id=",".join(docs.values()))))
        return {
            "search": {key for key, doc_id in docs.items() if doc_id in found},
            "read": {key for key, doc_id in docs.items() if can_read(client_api, persona, doc_id)},
            "retrieve": client_api.get(binary, persona, headers={"Accept": "application/pdf"}).status_code,
        }

    everything = {"search": {"report", "other"}, "read": {"report", "other"}, "retrieve": 200}
    # The shipped matrix (the session app): the pharmacist reads both.
    assert seen(api, "ph_didot") == everything
    runtime = Runtime(settings, engine=api.runtime.engine)
    with TestClient(create_app(settings, runtime), base_url="http://testserver") as client:
        replaced = Api(client, runtime)
        assert seen(replaced, "ph_didot") == {"search": {"other"}, "read": {"other"}, "retrieve": 404}
        assert seen(replaced, "inf_moreau") == everything  # nurses: unchanged
        assert seen(replaced, "dr_lambert") == everything  # doctors: unchanged
        # What the pharmacist deposits themselves stays theirs, whatever the matrix says.
        own = replaced.publish("ph_didot", factories.docref(ins, system, author_idnat="807655473259")).json()["id"]
        assert can_read(replaced, "ph_didot", own)
        assert own in match_ids(replaced.search("ph_didot", patient=patient_id))
    assert seen(api, "ph_didot") == everything  # the session app still uses the shipped file


def can_read(client_api: Api, persona: str, doc_id: str) -> bool:
    return client_api.get(f"/fhir/DocumentReference/{doc_id}", persona).status_code == 200
