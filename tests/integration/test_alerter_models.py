"""The alerter's built-in model rules on a real InfluxDB: the simulator's fleet (a rollout,
one tampered camera, one drifting camera) seeded as the ingest stores it, then one cycle.
`model_drift` and `model_integrity` are raised by rule, as ordinary alert events."""

from __future__ import annotations

import pytest

from alerter.cli import build_alerter
from stack.testing import InfluxFixture
from tests.conftest import SettingsFactory
from tests.integration.alerter_support import alert_events, alerter_token_of
from tests.integration.dashboard_seed import DashboardDB
from tests.integration.models_seed import seed_models

pytestmark = pytest.mark.integration


def _db(fx: InfluxFixture) -> DashboardDB:
    return DashboardDB(
        url=fx.url, org=fx.org, admin_token=fx.admin_token, token=fx.admin_token,
        bucket=fx.bucket, bucket_1m=fx.bucket_1m, bucket_1h=fx.bucket_1h,
        bucket_ops=fx.bucket_ops, bucket_state=fx.bucket_state,
    )  # fmt: skip


def test_drift_and_tampering_are_raised_by_rule(
    fresh_influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    truth = seed_models(_db(fresh_influxdb))
    assert truth.plan.tampered is not None
    settings = make_settings(None, fresh_influxdb, alerter_token=alerter_token_of(fresh_influxdb))
    alerter, client, _, _ = build_alerter(settings)
    try:
        alerter.cycle()
    finally:
        client.close()
    raised: dict[str, set[tuple[str, str]]] = {}
    for site in {truth.drifting[0], truth.plan.tampered[0]}:
        for event in alert_events(fresh_influxdb, site):
            if event.get("state") == "raised":
                raised.setdefault(str(event["type"]), set()).add(
                    (str(event["site"]), str(event["device"]))
                )
    assert raised.get("model_drift") == {truth.drifting}
    assert raised.get("model_integrity") == {truth.plan.tampered}
