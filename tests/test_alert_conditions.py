"""The conditions that need more than one inventory row: a crash-looping pod (the waiting reason the
inventory keeps), restarts within a window (the restart history), and the control plane's failing
checks (its /livez and /readyz, asked of a real sandbox whose etcd is frozen for a moment)."""

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from clusters.kube.inventory import pod_fields
from clusters.models import Cluster, Pod
from monitoring import controlplane, evaluate, restarts
from monitoring.models import Alert, AlertRule, ClusterMonitorState, RestartSample


def rule(world, condition, **extra):
    extra.setdefault("for_seconds", 0)
    return AlertRule.objects.create(name=condition, cluster=world.cluster, condition=condition, **extra)


def targets(r, state="firing"):
    return sorted(Alert.objects.filter(rule=r, state=state).values_list("target", flat=True))


def pod(world, name, **extra):
    return Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid=f"uid-{name}", name=name, phase="Running", **extra)


def test_the_inventory_keeps_a_containers_waiting_reason():
    obj = {"metadata": {"name": "web-1", "namespace": "web", "uid": "u1"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"phase": "Running", "containerStatuses": [
               {"name": "a", "restartCount": 2, "state": {"running": {}}},
               {"name": "b", "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}}
    row = pod_fields(obj)
    assert row["waiting_reason"] == "CrashLoopBackOff" and row["restarts"] == 7
    obj["status"]["containerStatuses"][1]["state"] = {"running": {}}
    assert pod_fields(obj)["waiting_reason"] == ""
    obj["status"]["initContainerStatuses"] = [{"name": "init", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]
    assert pod_fields(obj)["waiting_reason"] == "ImagePullBackOff"


def test_crash_looping_pods_fire_with_their_selector_and_resolve(world):
    looping = pod(world, "web-1", waiting_reason="CrashLoopBackOff", restarts=6, node_name="worker-1")
    pod(world, "web-2", waiting_reason="ImagePullBackOff")
    pod(world, "web-3")
    every, on_other_node = rule(world, "pod-crash-looping", severity="critical"), rule(world, "pod-crash-looping", selector={"node": "w-9"})
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(every) == ["pod/web-prod/web-1"] and targets(on_other_node) == []
    alert = Alert.objects.get(rule=every)
    assert "CrashLoopBackOff" in alert.message and alert.value == 6 and alert.severity == "critical"
    assert alert.project_id == world.project.pk and alert.cluster_wide_id is None  # the project's people see it
    looping.waiting_reason = ""
    looping.save()
    evaluate.evaluate_cluster(world.cluster.pk)
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_restarts_within_a_window_count_only_the_increases_seen(world):
    long_running = pod(world, "web-1", restarts=0)
    restarted_before = pod(world, "web-2", restarts=3)  # restarted before Corral followed it: history unknown
    r = rule(world, "pod-restarts", threshold=3, window_seconds=600)
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == []  # first look: baselines only
    assert list(RestartSample.objects.values_list("pod_id", "previous", "restarts")) == [(restarted_before.pk, 3, 3)]

    Pod.objects.filter(pk=long_running.pk).update(restarts=4)  # it had none at the last look: all 4 are new
    Pod.objects.filter(pk=restarted_before.pk).update(restarts=4)  # one new
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == ["pod/web-prod/web-1"]
    alert = Alert.objects.get(rule=r)
    assert alert.value == 4 and "4 times in the last 10 minutes" in alert.message
    evaluate.evaluate_cluster(world.cluster.pk)  # nothing new: the same alert, no second sample
    assert RestartSample.objects.filter(pod=long_running).count() == 1

    # A pod new to Corral: counted from zero when it started after the last look, else a baseline.
    old = timezone.now() - timedelta(days=3)
    gone = pod(world, "web-3", restarts=9, created_in_cluster=old)
    pod(world, "web-4", restarts=5, created_in_cluster=timezone.now())
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == ["pod/web-prod/web-1", "pod/web-prod/web-4"]

    # The restarts age out of the window: resolved.
    RestartSample.objects.update(at=timezone.now() - timedelta(minutes=11))
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == [] and sorted(targets(r, "resolved")) == ["pod/web-prod/web-1", "pod/web-prod/web-4"]

    # Pruning keeps each pod's newest count (the baseline of its next increase) and drops pods gone.
    RestartSample.objects.filter(pod=restarted_before).update(at=timezone.now() - timedelta(days=2))
    Pod.objects.filter(pk=restarted_before.pk).update(restarts=6)
    evaluate.evaluate_cluster(world.cluster.pk)
    gone.delete()
    assert restarts.prune(timezone.now()) == 3  # web-2's two superseded day-old rows, and web-3's (pod gone)
    assert dict(RestartSample.objects.filter(pod=restarted_before).values_list("restarts", "previous")) == {6: 4}
    assert not RestartSample.objects.filter(pod_id=gone.pk).exists()


def test_restart_windows_are_validated(world):
    client = world.client(world.owner)
    url = "/api/v1/alert-rules/"
    base = {"name": "r", "cluster": world.cluster.pk, "threshold": 3}
    response = client.post(url, {**base, "condition": "pod-not-running", "window_seconds": 600}, format="json")
    assert response.status_code == 400 and "pod-restarts" in response.json()["window_seconds"][0]
    response = client.post(url, {**base, "condition": "pod-restarts", "window_seconds": 10 * 86400}, format="json")
    assert response.status_code == 400 and "a day" in str(response.json()["window_seconds"])
    response = client.post(url, {**base, "condition": "pod-restarts", "window_seconds": 900}, format="json")
    assert response.status_code == 201 and response.json()["window_seconds"] == 900


def test_control_plane_checks_parse_and_fire_per_check(world):
    text = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]poststarthook/start-apiextensions-informers ok\nlivez check failed\n"
    assert controlplane.parse(text) == [("etcd", "failed: reason withheld")]
    r = rule(world, "control-plane-unhealthy", severity="critical")
    only_scheduler = rule(world, "control-plane-unhealthy", selector={"check": "poststarthook/scheduling"})
    ClusterMonitorState.objects.create(cluster=world.cluster, control_plane_failing=[
        {"check": "etcd", "endpoint": "livez", "reason": "failed: reason withheld"},
        {"check": "etcd", "endpoint": "readyz", "reason": "failed: reason withheld"}])
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == ["control-plane/etcd"] and targets(only_scheduler) == []
    alert = Alert.objects.get(rule=r)
    assert "/livez" in alert.message and "/readyz" in alert.message and alert.cluster_wide_id == world.cluster.pk
    ClusterMonitorState.objects.filter(cluster=world.cluster).update(control_plane_failing=[])
    evaluate.evaluate_cluster(world.cluster.pk)
    alert.refresh_from_db()
    assert alert.state == "resolved"
    # A whole-cluster condition: not for a project rule.
    response = world.client(world.owner).post("/api/v1/alert-rules/", {"name": "cp", "project": world.project.pk,
                                                                        "condition": "control-plane-unhealthy"}, format="json")
    assert response.status_code == 400 and "cluster rule" in response.content.decode()


@pytest.mark.kube
@pytest.mark.django_db(transaction=True)
def test_a_frozen_etcd_shows_as_a_failing_control_plane_check_on_a_sandbox(sandbox):
    cluster = Cluster.objects.create(
        name="cp-live", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                     "client_key": sandbox.admin_key_pem},
    )
    r = AlertRule.objects.create(name="cp", cluster=cluster, condition="control-plane-unhealthy", for_seconds=0)
    assert controlplane.probe(cluster) is False  # healthy: nothing failing, nothing changed
    state = ClusterMonitorState.objects.get(cluster=cluster)
    assert state.control_plane_failing == [] and state.control_plane_error == "" and state.control_plane_checked

    etcd = sandbox._state()["components"]["etcd"]["pid"]
    os.kill(etcd, signal.SIGSTOP)  # etcd stops answering; the API server keeps serving its health checks
    try:
        # The API server keeps its etcd check's answer for a moment: ask until it tells (a few seconds,
        # well inside the controllers' 10 s lease renewal).
        deadline = time.monotonic() + 8
        while not controlplane.probe(cluster):
            assert time.monotonic() < deadline, str(ClusterMonitorState.objects.filter(cluster=cluster).values().first())
            time.sleep(0.5)
    finally:
        os.kill(etcd, signal.SIGCONT)
    failing = ClusterMonitorState.objects.get(cluster=cluster).control_plane_failing
    assert {"check": "etcd", "endpoint": "readyz"} in [{k: f[k] for k in ("check", "endpoint")} for f in failing], failing
    evaluate.evaluate_cluster(cluster.pk)
    assert "control-plane/etcd" in targets(r)

    deadline = time.monotonic() + 30
    while True:  # etcd answers again: the checks pass, the alert resolves
        controlplane.probe(cluster)
        if ClusterMonitorState.objects.get(cluster=cluster).control_plane_failing == []:
            break
        assert time.monotonic() < deadline, "the control plane never became healthy again"
        time.sleep(0.5)
    evaluate.evaluate_cluster(cluster.pk)
    assert targets(r) == [] and "control-plane/etcd" in targets(r, "resolved")


@pytest.mark.kube
@pytest.mark.django_db(transaction=True)
def test_a_crash_looping_pod_on_a_sandbox_fires_both_pod_rules_and_resolves(sandbox, kubectl):
    """kwok runs the pod; its status is then patched as a kubelet would report a container in
    back-off (a bare Running pod matches none of kwok's stages, so kwok leaves the status be)."""
    import json

    from clusters import sync

    cluster = Cluster.objects.create(
        name="crash-live", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                     "client_key": sandbox.admin_key_pem},
    )
    looping = AlertRule.objects.create(name="loop", cluster=cluster, condition="pod-crash-looping", for_seconds=0,
                                       selector={"namespace": kubectl.namespace})
    restarting = AlertRule.objects.create(name="restarts", cluster=cluster, condition="pod-restarts", threshold=3, window_seconds=600,
                                          for_seconds=0, selector={"namespace": kubectl.namespace})
    kubectl("run", "flaky", "--image=busybox", "--restart=Never")
    deadline = time.monotonic() + 60
    while kubectl("get", "pod", "flaky", "-o", "jsonpath={.status.phase}") != "Running":
        assert time.monotonic() < deadline, "the pod never ran"
        time.sleep(0.5)
    sync.sync(cluster.pk)
    evaluate.evaluate_cluster(cluster.pk)  # the first look: no restarts yet
    assert targets(looping) == [] and targets(restarting) == []

    def report(state, restarts):
        status = json.loads(kubectl("get", "pod", "flaky", "-o", "json"))["status"]
        status["containerStatuses"][0].update({"restartCount": restarts, "state": state, "ready": "running" in state})
        kubectl("patch", "pod", "flaky", "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"containerStatuses": status["containerStatuses"]}}))

    report({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}, 4)
    time.sleep(1)  # kwok would have overwritten it by now if a stage matched
    assert kubectl("get", "pod", "flaky", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}") == "CrashLoopBackOff"
    sync.sync(cluster.pk)
    pod_row = Pod.objects.get(cluster=cluster, name="flaky")
    assert pod_row.waiting_reason == "CrashLoopBackOff" and pod_row.restarts == 4
    evaluate.evaluate_cluster(cluster.pk)
    target = f"pod/{kubectl.namespace}/flaky"
    assert targets(looping) == [target] and targets(restarting) == [target]
    assert Alert.objects.get(rule=restarting).value == 4

    report({"running": {"startedAt": "2026-01-01T00:00:00Z"}}, 4)
    sync.sync(cluster.pk)
    evaluate.evaluate_cluster(cluster.pk)
    assert targets(looping) == [] and targets(looping, "resolved") == [target]
    assert targets(restarting) == [target]  # the restarts stay counted for their window


def test_the_periodic_pass_applies_every_change_together_and_then_finds_nothing_to_do(world):
    from clusters.models import Node
    from monitoring.models import AlertGroup

    for cluster in (world.cluster, world.other_cluster):
        Node.objects.create(cluster=cluster, uid=f"n-{cluster.pk}", name="worker-1", ready=False)
    everywhere = AlertRule.objects.create(name="all nodes", condition="node-not-ready", for_seconds=0, group_wait_seconds=0)
    patient = rule(world, "node-not-ready", for_seconds=600)
    looked, changed = evaluate.evaluate_all()
    assert (looked, changed) == (3, 3)
    assert sorted(Alert.objects.filter(rule=everywhere, state="firing").values_list("cluster_id", flat=True)) == sorted(
        [world.cluster.pk, world.other_cluster.pk])
    assert Alert.objects.get(rule=patient).state == "pending"
    assert AlertGroup.objects.filter(rule=everywhere, next_flush__isnull=False).count() == 2  # made due, per cluster
    assert not AlertGroup.objects.filter(rule=patient).exists()  # nothing fired: nothing to tell
    assert evaluate.evaluate_all() == (3, 0)  # steady: nothing written

    Node.objects.filter(cluster=world.cluster).update(ready=True)
    assert evaluate.evaluate_all() == (3, 2)
    assert Alert.objects.get(rule=everywhere, cluster=world.cluster).state == "resolved"
    assert Alert.objects.get(rule=everywhere, cluster=world.other_cluster).state == "firing"
    assert not Alert.objects.filter(rule=patient).exists()  # pending, never fired: dropped


def test_the_periodic_pass_falls_back_to_rule_by_rule_when_an_alert_was_opened_meanwhile(world):
    pod(world, "web-1", waiting_reason="CrashLoopBackOff")
    r = rule(world, "pod-crash-looping")
    matches = evaluate.matches_for(r, world.cluster)
    # The same rule twice in one batch opens the same alert twice: the insert conflicts, as it
    # would with an event-driven evaluation that got there first.
    assert evaluate.apply_all([(r, world.cluster.pk, matches), (r, world.cluster.pk, matches)], timezone.now()) == 2
    assert targets(r) == ["pod/web-prod/web-1"] and Alert.objects.filter(rule=r).count() == 1
