"""Cluster health against a real API server: stopping it makes the cluster unavailable after the
grace period, starting it again makes it active by itself."""

from datetime import timedelta

import pytest

from clusters import health
from clusters.models import Cluster

pytestmark = pytest.mark.kube


def test_stopped_apiserver_turns_cluster_unavailable_and_back(db, sandbox, monkeypatch):
    monkeypatch.setattr(health, "GRACE", timedelta(seconds=0))
    cluster = Cluster.objects.create(
        name="health", driver="imported", state="active",
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    assert health.check(cluster.pk) == "active"
    cluster.refresh_from_db()
    assert cluster.kubernetes_version.startswith("v1.36") and cluster.last_seen is not None

    sandbox.stop_apiserver()
    try:
        assert health.check(cluster.pk) == "unavailable"
        cluster.refresh_from_db()
        assert "cannot connect" in cluster.last_error
        down_since = cluster.state_since
        assert health.check(cluster.pk) == "unavailable"  # stays, and the since-time does not move
        cluster.refresh_from_db()
        assert cluster.state_since == down_since
    finally:
        sandbox.start_apiserver()
    assert health.check(cluster.pk) == "active"
    cluster.refresh_from_db()
    assert cluster.last_error == ""


def test_one_failed_check_within_the_grace_period_is_not_an_outage(db):
    from django.utils import timezone

    cluster = Cluster.objects.create(name="blip", driver="imported", state="active", last_seen=timezone.now(),
                                     credentials={"server": "https://127.0.0.1:1", "token": "x"})
    assert health.check(cluster.pk) == "active"
    cluster.refresh_from_db()
    assert "cannot connect" in cluster.last_error
