"""Move to Kubernetes, the translation alone (clusters/swarm/migrate.py): service specs captured
from a real dockerd (tests/data/swarm_service_specs.json: Debian's docker.io 20.10.24 in swarm mode,
``client.services.get(id).attrs["Spec"]`` of the stack below and of one `docker service create`)
become Kubernetes objects, and what cannot be carried over is listed by setting.

The captured stack (`docker stack deploy -c stack.yml shop`): ``web`` (3 replicas, port 8080
published as 8081, env, limits/reservations, constraints node.role==worker, node.labels.zone==a,
node.platform.os==linux, spread over zone, max 2 per node, update parallelism 2 delay 10s
start-first rollback, restart on-failure max 3, healthcheck, config webconf at /etc/web/conf.txt,
secret dbpass, volume data, network back) and ``agent`` (global, entrypoint/command, user 1000,
working dir, hostname, constraints node.hostname!=gone and node.id==abc, CMD-SHELL healthcheck,
stop grace 20s, cap_add NET_ADMIN).  ``plain``: `docker service create --replicas 2 -p 9000:80/udp
--env A=1 --limit-cpu 1.5 --reserve-memory 1G --health-cmd "wget -q localhost" --health-interval 5s
--restart-condition any --update-order stop-first --update-parallelism 0 --label team=x
--container-label c=1 --mount type=tmpfs,target=/cache --publish mode=host,target=53,published=5353`.
"""

import copy
import json
from pathlib import Path

import pytest
import yaml

from clusters.swarm import migrate

SPECS = json.loads((Path(__file__).parent / "data" / "swarm_service_specs.json").read_text())


def spec(name):
    return copy.deepcopy(SPECS[name])


def objects_by_kind(translation):
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in translation.objects}


def skipped(translation, service=None):
    return {item["setting"]: item for item in translation.untranslated if service in (None, item["service"])}


def test_a_stack_becomes_deployments_daemonsets_and_services_named_as_on_its_network():
    out = migrate.translate_stack([spec("shop_web"), spec("shop_agent")], networks={
        SPECS["shop_web"]["TaskTemplate"]["Networks"][0]["Target"]: "shop_back"})
    objects = objects_by_kind(out)
    assert set(objects) == {("Deployment", "web"), ("Service", "web"), ("DaemonSet", "agent"), ("Service", "agent")}
    assert out.names == {"shop_web": "web", "shop_agent": "agent"}
    assert list(yaml.safe_load_all(out.as_dict()["yaml"])) == out.objects  # the YAML is the objects

    web = objects["Deployment", "web"]
    assert web["spec"]["replicas"] == 3
    assert web["metadata"]["labels"]["tier"] == "front"
    assert web["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "web"}
    assert web["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "web"
    pod = web["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "corral-test/busybox:1"
    assert container["args"] == ["httpd", "-f", "-p", "8080"] and "command" not in container
    assert container["env"] == [{"name": "GREETING", "value": "hello world"}, {"name": "MODE", "value": "production"}]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"},
        {"key": "zone", "operator": "In", "values": ["a"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]}]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "zone"
    probe = {"exec": {"command": ["wget", "-q", "-O-", "http://127.0.0.1:8080/"]}, "periodSeconds": 10, "timeoutSeconds": 3,
             "failureThreshold": 3, "initialDelaySeconds": 5}
    assert container["livenessProbe"] == probe and container["readinessProbe"] == probe
    assert web["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/run/secrets/dbpass"]["name"]]["secret"] == {"secretName": "dbpass", "items": [{"key": "dbpass", "path": "dbpass", "mode": 0o444}]}
    assert volumes[mounts["/etc/web/conf.txt"]["name"]]["configMap"]["name"] == "webconf"
    assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"] == {"claimName": "data"}
    # Corral never reads secret contents: it names what the user must create.
    assert {(n["kind"], n["name"], n["swarm_name"]) for n in out.needs} == {
        ("Secret", "dbpass", "shop_dbpass"), ("ConfigMap", "webconf", "shop_webconf"), ("PersistentVolumeClaim", "data", "shop_data")}

    service = objects["Service", "web"]
    assert service["spec"]["ports"] == [{"name": "tcp-8081", "port": 8081, "targetPort": 8080, "protocol": "TCP"}]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "web"}
    assert objects["Service", "agent"]["spec"]["clusterIP"] == "None"  # no ports: still resolvable by name

    web_left = skipped(out, "shop_web")
    assert set(web_left) == {"TaskTemplate.Placement.MaxReplicas", "TaskTemplate.Networks", "TaskTemplate.RestartPolicy.Condition",
                             "TaskTemplate.RestartPolicy.MaxAttempts", "UpdateConfig.Delay", "UpdateConfig.FailureAction",
                             "EndpointSpec.Ports.PublishedPort"}
    assert web_left["TaskTemplate.Networks"]["value"] == "shop_back"
    assert web_left["UpdateConfig.FailureAction"]["value"] == "rollback"
    assert web_left["EndpointSpec.Ports.PublishedPort"]["value"] == ["8081/tcp"]
    assert all(item["reason"] for item in out.untranslated)

    agent = objects["DaemonSet", "agent"]
    pod = agent["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["sh", "-c"] and container["args"] == ["while true; do sleep 3600; done"]
    assert container["workingDir"] == "/tmp"
    assert container["securityContext"] == {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}}
    assert container["livenessProbe"]["exec"]["command"] == ["/bin/sh", "-c", "true"]
    assert container["livenessProbe"]["periodSeconds"] == 30  # Docker's default interval
    assert pod["terminationGracePeriodSeconds"] == 20 and pod["hostname"] == "agent"
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["gone"]}]}]
    agent_left = skipped(out, "shop_agent")
    assert set(agent_left) == {"TaskTemplate.Placement.Constraints", "TaskTemplate.Networks"}
    assert agent_left["TaskTemplate.Placement.Constraints"]["value"] == "node.id==abc"


def test_a_single_service_with_udp_host_ports_tmpfs_and_stop_first_updates():
    out = migrate.translate_service(spec("plain"))
    objects = objects_by_kind(out)
    deployment, service = objects["Deployment", "plain"], objects["Service", "plain"]
    assert deployment["metadata"]["labels"]["team"] == "x"
    assert deployment["spec"]["template"]["metadata"]["labels"]["c"] == "1"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP", "hostPort": 5353}]
    assert service["spec"]["ports"] == [{"name": "udp-9000", "port": 9000, "targetPort": 80, "protocol": "UDP"}]
    assert container["resources"] == {"requests": {"memory": "1Gi"}, "limits": {"cpu": "1500m"}}
    assert container["livenessProbe"]["exec"]["command"] == ["/bin/sh", "-c", "wget -q localhost"]
    assert container["livenessProbe"]["periodSeconds"] == 5 and container["livenessProbe"]["timeoutSeconds"] == 30
    assert deployment["spec"]["template"]["spec"]["volumes"] == [{"name": "mount-0", "emptyDir": {"medium": "Memory"}}]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": "100%"}
    # Only the routing mesh is left out: the engine's defaults (pause, monitor 5s, restart delay 5s) are not noise.
    assert set(skipped(out)) == {"EndpointSpec.Ports.PublishedPort"}
    assert not out.needs


def test_what_has_no_equivalent_is_listed_and_nothing_is_dropped_silently():
    web = spec("plain")
    web["TaskTemplate"]["ContainerSpec"].update({
        "User": "www-data", "Sysctls": {"net.core.somaxconn": "1024"}, "Hostname": "{{.Node.Hostname}}-web",
        "Env": ["A=1", "INHERITED"], "Healthcheck": {"Test": ["NONE"]}, "StopSignal": "SIGQUIT",
        "Mounts": [{"Type": "bind", "Source": "/srv", "Target": "/srv"}]})
    web["TaskTemplate"]["Placement"] = {"Constraints": ["engine.labels.disk==ssd", "node.role==manager", "nonsense"]}
    web["TaskTemplate"]["Resources"]["Limits"]["Pids"] = 100
    web["TaskTemplate"]["LogDriver"] = {"Name": "syslog"}
    web["RollbackConfig"] = {"Parallelism": 1}
    out = migrate.translate_service(web)
    left = {(item["setting"], json.dumps(item["value"])) for item in out.untranslated}
    for setting, value in [
        ("TaskTemplate.ContainerSpec.User", "www-data"), ("TaskTemplate.ContainerSpec.Sysctls", {"net.core.somaxconn": "1024"}),
        ("TaskTemplate.ContainerSpec.Hostname", "{{.Node.Hostname}}-web"), ("TaskTemplate.ContainerSpec.Env", "INHERITED"),
        ("TaskTemplate.ContainerSpec.Healthcheck", ["NONE"]), ("TaskTemplate.ContainerSpec.StopSignal", "SIGQUIT"),
        ("TaskTemplate.ContainerSpec.Mounts[0]", {"Type": "bind", "Source": "/srv", "Target": "/srv"}),
        ("TaskTemplate.Placement.Constraints", "engine.labels.disk==ssd"), ("TaskTemplate.Placement.Constraints", "nonsense"),
        ("TaskTemplate.Resources.Limits.Pids", 100), ("TaskTemplate.LogDriver", {"Name": "syslog"}), ("RollbackConfig", {"Parallelism": 1}),
    ]:
        assert (setting, json.dumps(value)) in left, setting
    pod = out.objects[0]["spec"]["template"]["spec"]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]
    container = pod["containers"][0]
    assert "livenessProbe" not in container and "securityContext" not in container and "hostname" not in pod
    assert container["env"] == [{"name": "A", "value": "1"}]


def test_job_modes_a_replicated_job_is_a_job_a_global_job_is_listed():
    job = spec("plain")
    job["Mode"] = {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}}
    job["TaskTemplate"]["RestartPolicy"] = {"Condition": "on-failure", "MaxAttempts": 4}
    job.pop("UpdateConfig")
    out = migrate.translate_service(job)
    made = out.objects[0]
    assert made["kind"] == "Job" and made["spec"]["completions"] == 5 and made["spec"]["parallelism"] == 2
    assert made["spec"]["backoffLimit"] == 4 and made["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"

    every_node = spec("plain")
    every_node["Mode"] = {"GlobalJob": {}}
    out = migrate.translate_service(every_node)
    assert [obj["kind"] for obj in out.objects] == []
    assert "Mode" in skipped(out)


def test_names_that_kubernetes_refuses_are_made_valid_and_collisions_refused():
    odd = spec("plain")
    odd["Name"] = "My_Service.v2"
    assert migrate.translate_service(odd).names == {"My_Service.v2": "my-service-v2"}
    twin = spec("plain")
    twin["Name"] = "my-service-v2"
    with pytest.raises(ValueError, match="both be named my-service-v2"):
        migrate.translate_stack([odd, twin])
    for bad in (None, {}, {"Labels": {}}, "spec"):
        with pytest.raises(ValueError, match="not a Docker service spec"):
            migrate.translate_service(bad)
