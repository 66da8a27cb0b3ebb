"""The Models page on a real InfluxDB seeded with the simulator's fleet and rollout."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.auth import UserStore
from edge.rollout import model_sha256
from stack.testing import InfluxFixture
from tests.integration.app_support import signed_in_app
from tests.integration.dashboard_seed import DashboardDB, make_dashboard_db
from tests.integration.models_seed import ModelTruth, seed_models

pytestmark = pytest.mark.integration

TIMEOUT_S = 90


@pytest.fixture(scope="module")
def models_db(influxdb: InfluxFixture) -> tuple[DashboardDB, ModelTruth]:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    return db, seed_models(db)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.json"
    store = UserStore(path)
    store.add("test-operator", "operator-password", "operator")
    store.add("test-viewer", "viewer-password", "viewer")
    return path


def open_models(
    monkeypatch: pytest.MonkeyPatch, db: DashboardDB, users_file: Path, user: str
) -> AppTest:
    env = db.env(EDGEWATCH_USERS_FILE=str(users_file))
    at = signed_in_app(monkeypatch, env, user, timeout_s=TIMEOUT_S)
    at.switch_page("app_pages/models.py")
    return at.run()


def _table(at: AppTest, *columns: str):  # type: ignore[no-untyped-def]
    for frame in at.dataframe:
        if all(c in frame.value.columns for c in columns):
            return frame.value
    raise AssertionError(f"no table with columns {columns}")


def test_models_page_shows_the_simulators_truth(
    monkeypatch: pytest.MonkeyPatch,
    models_db: tuple[DashboardDB, ModelTruth],
    users_file: Path,
) -> None:
    db, truth = models_db
    at = open_models(monkeypatch, db, users_file, "test-operator")
    assert not at.exception, [e.value for e in at.exception]

    versions = _table(at, "model", "version", "devices", "sites")
    shown = {f"{r.model} {r.version}": r.devices for r in versions.itertuples()}
    assert shown == truth.final_counts

    plan = truth.plan
    new, old = f"{plan.model} {plan.to_version}", f"{plan.model} {plan.from_version}"
    at.selectbox(key="models_a").set_value(new)
    at.selectbox(key="models_b").set_value(old)
    at.run()
    verdicts = [m.value for m in at.markdown]
    assert any(f"inference_ms of {new} is higher than {old}" in v and "p=" in v
               for v in verdicts), verdicts  # fmt: skip
    assert any(f"fps of {new} is lower than {old}" in v for v in verdicts), verdicts

    drifting = _table(at, "PSI", "baseline median bin", "recent median bin")
    assert set(zip(drifting["site"], drifting["device"], strict=True)) == {truth.drifting}

    assert plan.tampered is not None
    flagged = [e.value for e in at.error]
    assert len(flagged) == 1 and f"{plan.tampered[0]}/{plan.tampered[1]}" in flagged[0]

    rollouts = _table(at, "from", "to")
    assert set(zip(rollouts["site"], rollouts["device"], strict=True)) == truth.moved
    assert set(rollouts["to"]) == {plan.to_version}


def test_a_registered_release_is_the_reference_and_lands_in_the_audit(
    monkeypatch: pytest.MonkeyPatch,
    models_db: tuple[DashboardDB, ModelTruth],
    users_file: Path,
) -> None:
    db, truth = models_db
    plan = truth.plan
    assert plan.model and plan.to_version and plan.tampered
    at = open_models(monkeypatch, db, users_file, "test-operator")
    # Register the tampered file's hash as the release: every other camera is now flagged.
    tampered = model_sha256(plan.model, plan.to_version, tampered=True)
    at.text_input[0].set_value(plan.model)
    at.text_input[1].set_value(plan.to_version)
    at.text_input[2].set_value(tampered)
    at.button[0].click()
    at.run()
    assert not at.exception
    where = _table(at, "integrity", "sha256")
    flagged = where[where["integrity"] == "FLAGGED"]
    assert (plan.tampered[0], plan.tampered[1]) not in set(
        zip(flagged["site"], flagged["device"], strict=True)
    )
    assert len(flagged) == truth.final_counts[f"{plan.model} {plan.to_version}"] - 1
    rows = db.query(
        'from(bucket: "' + db.bucket_ops + '") |> range(start: 0) '
        '|> filter(fn: (r) => r._measurement == "release_action" and r._field == "user")'
    )
    assert [r["_value"] for r in rows] == ["test-operator"]


def test_a_viewer_cannot_register_a_release(
    monkeypatch: pytest.MonkeyPatch,
    models_db: tuple[DashboardDB, ModelTruth],
    users_file: Path,
) -> None:
    db, _ = models_db
    at = open_models(monkeypatch, db, users_file, "test-viewer")
    assert not at.exception
    assert len(at.text_input) == 0
    assert any("only operators register" in c.value for c in at.caption)
