"""The workload endpoints on a Swarm cluster: a Swarm service is a Workload (kind "service"), its
stack a Namespace, so the one permission engine decides who sees and changes it (Swarm has no
RBAC of its own).  Deploy, scale, image update and removal go to the engine through
clusters/swarm/workloads.py; a project's pool is checked against the reservations of its stacks'
services before anything is created or scaled."""

from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters import container_spec
from clusters.api import serializers as s
from clusters.api.errors import require_usable, workload_errors
from clusters.kube.workloads import WorkloadError
from clusters.models import Namespace, Workload
from clusters.swarm import stacks, store
from clusters.swarm import workloads as sw
from clusters.swarm.client import SwarmConnectionError, docker_client
from portal.api.serializers import StrictSerializer
from portal.audit import record
from portal.permissions import VIEW, can_add
from portal.validators import MAX_ID, validate_dns1123_label
from projects import quotas
from projects.models import Project
from projects.quantities import parse_quantity

# The pool keys a Swarm service takes from: reservations are requests, tasks are pods.
POOL_KEYS = {"requests.cpu": "requests.cpu", "cpu": "requests.cpu", "requests.memory": "requests.memory",
             "memory": "requests.memory", "limits.cpu": "limits.cpu", "limits.memory": "limits.memory", "pods": "pods"}


# --- input --------------------------------------------------------------------------------------


def _compose_field(parse, value, field):
    try:
        return parse(value, field)
    except stacks.ComposeError as exc:
        raise serializers.ValidationError(f"{exc.field.removeprefix(field).lstrip('.') or 'value'}: {exc.message}"
                                          if exc.field != field else exc.message) from None


class SwarmServiceCreateSerializer(StrictSerializer):
    """``docker service create`` through Corral: what a compose service says, as JSON."""

    cluster = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    namespace = serializers.CharField(max_length=40, help_text='The stack ("default": outside any stack)')
    project = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                       help_text="For a stack Corral does not know yet: the project that will own it")
    name = serializers.CharField(max_length=63, validators=[validate_dns1123_label])
    image = serializers.RegexField(r"^[^\s]+$", max_length=500, error_messages={"invalid": "an image reference has no spaces, e.g. nginx:1.27"})
    mode = serializers.ChoiceField(choices=["replicated", "global"], default="replicated")
    replicas = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False, help_text="One port to publish on the same number")
    ports = serializers.JSONField(required=False, help_text='[80, "8080:80", {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"}]')
    env = serializers.JSONField(required=False, help_text='[{"name": "MODE", "value": "prod"}]')
    resources = serializers.JSONField(required=False, help_text=(
        '{"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {...}}: requests are the tasks\' reservations; '
        "what is not given comes from the project's container defaults"))
    constraints = serializers.ListField(child=serializers.CharField(max_length=200), max_length=20, required=False,
                                        help_text='Placement constraints: ["node.role==worker"]')
    labels = serializers.DictField(child=serializers.CharField(max_length=500, allow_blank=True), required=False)
    command = serializers.ListField(child=serializers.CharField(max_length=1000, allow_blank=True), max_length=100, required=False,
                                    help_text="The container's arguments (compose `command`)")
    networks = serializers.ListField(child=serializers.RegexField(stacks.NAME, max_length=100), max_length=10, required=False,
                                     help_text='Networks to attach by their engine names (e.g. "host", "shop_front")')
    update_config = serializers.JSONField(required=False, help_text='{"parallelism": 1, "delay": "5s", "order": "start-first", "failure_action": "rollback"}')
    healthcheck = serializers.JSONField(required=False, help_text='{"test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1/"], "interval": "10s"}')

    def validate_ports(self, value):
        return _compose_field(stacks._ports, value, "ports")  # as compose reads them: 80 is a target, Swarm picks the published port

    def validate_env(self, value):
        return container_spec.validate_env(value)

    def validate_resources(self, value):
        return container_spec.validate_resources(value)

    def validate_update_config(self, value):
        return _compose_field(stacks._update_config, value, "update_config")

    def validate_healthcheck(self, value):
        return _compose_field(stacks._healthcheck, value, "healthcheck")

    def validate_labels(self, value):
        reserved = sorted(k for k in value if k in (sw.STACK_LABEL, sw.PROJECT_LABEL))
        if reserved:
            raise serializers.ValidationError(f"{reserved[0]} is set by Corral")
        return value

    def validate(self, attrs):
        if "port" in attrs and "ports" in attrs:
            raise serializers.ValidationError({"port": ["give port or ports, not both"]})
        if "port" in attrs:
            attrs["ports"] = [{"target": attrs["port"], "published": attrs.pop("port"), "protocol": "tcp", "mode": "ingress"}]
        if attrs["mode"] == "global" and "replicas" in attrs:
            raise serializers.ValidationError({"replicas": ["a global service runs one task per node; give no replicas"]})
        if len(sw.service_name(attrs["namespace"], attrs["name"])) > 63:
            raise serializers.ValidationError({"name": ["with its stack's name (<stack>_<name>) it is longer than 63 characters"]})
        return attrs


class ImageSerializer(StrictSerializer):
    image = serializers.RegexField(r"^[^\s]+$", max_length=500, error_messages={"invalid": "an image reference has no spaces, e.g. nginx:1.27"})


class StackDeploySerializer(StrictSerializer):
    name = serializers.CharField(max_length=40, help_text="The stack's name (its services are <name>_<service>)")
    compose = serializers.CharField(trim_whitespace=False, help_text="The compose file's text (YAML)")
    project = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                       help_text="For a new stack: the project that will own it")


# --- talking to the engine ----------------------------------------------------------------------


def client_for(cluster):
    require_usable(cluster)
    try:
        return docker_client(cluster.credentials)
    except SwarmConnectionError as exc:
        raise exceptions.ValidationError({"cluster": [str(exc)]}) from None


def run(cluster, change):
    """``change(client)`` against the swarm, its failures as API errors."""
    client = client_for(cluster)
    try:
        with workload_errors():
            return change(client)
    finally:
        client.close()


def remember(cluster, attrs):
    """Store the service as the engine answered; the stored row."""
    return store.store_service(cluster, attrs)


def forget(cluster, uids):
    store.forget_services(cluster, uids)


# --- the project's pool -------------------------------------------------------------------------


def _fmt(key, value):
    return quotas.format_quantity(key, value)


def check_pool(client, project, asked, replacing=(), field="replicas"):
    """Refuse (400 on ``field``, saying by how much) when the reservations of the project's stacks'
    services, with ``asked`` added and the services ``replacing`` (engine ids) left out, pass the
    project's pool.  Runs with the project row locked."""
    if project is None or not project.resource_quota:
        return
    pool = {}
    for key, quantity in project.resource_quota.items():
        if key in POOL_KEYS:
            demand_key = POOL_KEYS[key]
            amount = parse_quantity(quantity)
            pool[demand_key] = min(amount, pool.get(demand_key, amount))
    if not pool:
        return
    stacks_ = list(project.namespaces.values_list("name", flat=True))
    nodes = sw.ready_nodes(client)
    used = {}
    for attrs in sw.project_services(client, stacks_):
        if attrs["ID"] in replacing:
            continue
        for key, value in sw.task_demand(attrs, nodes=nodes).items():
            used[key] = used.get(key, Decimal(0)) + value
    problems = []
    for key, limit in sorted(pool.items()):
        taken, wanted = used.get(key, Decimal(0)), asked.get(key, Decimal(0))
        if wanted and taken + wanted > limit:
            problems.append(f"{key}: {_fmt(key, taken + wanted)} would be reserved, {_fmt(key, taken + wanted - limit)} more than the "
                            f"pool of {_fmt(key, limit)} ({_fmt(key, taken)} taken by its other services, {_fmt(key, wanted)} asked)")
    if problems:
        raise exceptions.ValidationError({field: [f"does not fit in project {project.name!r}'s pool: " + "; ".join(problems)]})


def _sum(demands):
    total = {}
    for demand in demands:
        for key, value in demand.items():
            total[key] = total.get(key, Decimal(0)) + value
    return total


# --- the stack a change goes to -----------------------------------------------------------------


def stack_for(request, cluster, name, project_id, field="namespace"):
    """The stack's Namespace row, locked with its project for the pool check; a stack not known yet
    is made in ``project_id`` (which the user must be able to add to).  Call inside a transaction."""
    user = request.user
    namespace = Namespace.objects.restrict(user, VIEW).filter(cluster=cluster, name=name).select_related("project").first()
    if namespace is None:
        if project_id is None:
            raise exceptions.ValidationError({field: [
                f"no stack {name!r} you may see in cluster {cluster.pk}; give project to start a new stack in one of your projects"]})
        if name == sw.DEFAULT_STACK or len(name) > 40 or not stacks.STACK_NAME.match(name):
            raise exceptions.ValidationError({field: [
                f"{name!r} cannot be a new stack: lower-case letters, digits and '-', at most 40, not 'default' "
                "(what is in no stack belongs to the cluster's owners)"]})
        project = Project.objects.restrict(user, VIEW).filter(pk=project_id, cluster=cluster).first()
        if project is None:
            raise exceptions.ValidationError({"project": [f"no project {project_id} you may see in cluster {cluster.pk}"]})
        if not can_add(user, Namespace, project=project):
            raise exceptions.PermissionDenied(f"you may not add a stack to project {project.name}")
        if Namespace.objects.filter(cluster=cluster, name=name).exists():
            raise exceptions.ValidationError({field: [f"stack {name!r} exists in this cluster and is not yours; choose another name"]})
        project = quotas.lock_projects(project.pk).get(project.pk)
        namespace = Namespace.objects.create(cluster=cluster, name=name, uid="", project=project)
        record("create", namespace, after={"name": name, "project": project.pk, "kind": "stack"})
        return namespace
    if project_id is not None and namespace.project_id != project_id:
        raise exceptions.ValidationError({"project": [f"stack {name!r} belongs to another project; leave project out"]})
    if not can_add(user, Workload, cluster=cluster, project=namespace.project):
        raise exceptions.PermissionDenied(f"you may not deploy to stack {name}")
    if namespace.project_id is not None:
        namespace.project = quotas.lock_projects(namespace.project_id).get(namespace.project_id)
    return namespace


# --- the endpoints ------------------------------------------------------------------------------


def _spec(v, namespace, project):
    resources = container_spec.with_defaults(v.get("resources") or {}, project)
    spec = {
        "name": sw.service_name(namespace.name, v["name"]), "image": v["image"], "mode": v["mode"],
        "replicas": v.get("replicas", 1), "ports": v.get("ports") or [], "env": v.get("env") or [],
        "resources": resources, "constraints": v.get("constraints") or [], "networks": v.get("networks") or [],
        "labels": {**(v.get("labels") or {}), **sw.stack_labels(namespace.name, project.pk if project else None)},
        "container_labels": {k: val for k, val in sw.stack_labels(namespace.name, None).items()},
    }
    for key in ("command", "update_config", "healthcheck"):
        if v.get(key):
            spec[key] = v[key]
    return spec


def create_service(request, cluster):
    data = SwarmServiceCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    v = data.validated_data
    client = client_for(cluster)
    try:
        with transaction.atomic():
            namespace = stack_for(request, cluster, v["namespace"], v.get("project"))
            project = namespace.project
            spec = _spec(v, namespace, project)
            nodes = sw.ready_nodes(client) if spec["mode"] == "global" else 1
            check_pool(client, project, sw.task_demand(spec, nodes=nodes), field="replicas")
            attrs = sw.create(client, spec)
        # The service exists in the swarm from here: store it even if the stack row was new.
        workload = remember(cluster, attrs)
    except WorkloadError as exc:
        raise _api_error(exc) from None
    finally:
        client.close()
    record("create", workload, after={"image": spec["image"], "replicas": spec.get("replicas"), "stack": namespace.name,
                                      "ports": spec["ports"], "env": [e["name"] for e in spec["env"]], "resources": spec["resources"]})
    body = s.WorkloadSerializer(workload).data
    body["service"] = {"ports": spec["ports"], "env": spec["env"], "resources": spec["resources"], "constraints": spec["constraints"]}
    return Response(body, status=status.HTTP_201_CREATED)


def _api_error(exc):
    if exc.status == 400:
        return exceptions.ValidationError({"detail": exc.message})
    if exc.status == 404:
        return exceptions.NotFound(exc.message)
    error = exceptions.APIException(exc.message)
    error.status_code = exc.status
    return error


def scale_service(workload, replicas):
    client = client_for(workload.cluster)
    try:
        with transaction.atomic():
            project = quotas.lock_projects(workload.namespace.project_id).get(workload.namespace.project_id)
            service = sw.get(client, workload.uid)
            if replicas > workload.desired_replicas:  # scaling down always fits
                check_pool(client, project, sw.task_demand(service.attrs, replicas=replicas), replacing={workload.uid})
            attrs = sw.scale(client, workload.uid, replicas)
        before = workload.desired_replicas
        workload = remember(workload.cluster, attrs)
    except WorkloadError as exc:
        raise _api_error(exc) from None
    finally:
        client.close()
    record("action", workload, before={"replicas": before}, after={"replicas": replicas}, message=f"scaled to {replicas}")
    return Response(s.WorkloadSerializer(workload).data)


def update_image(workload, image):
    before = list(workload.images)
    attrs = run(workload.cluster, lambda client: sw.update_image(client, workload.uid, image))
    workload = remember(workload.cluster, attrs)
    record("action", workload, before={"images": before}, after={"images": [image]}, message=f"image set to {image}")
    return Response(s.WorkloadSerializer(workload).data)


def remove_service(workload):
    run(workload.cluster, lambda client: sw.remove(client, workload.uid))
    record("delete", workload, before={"kind": workload.kind, "stack": workload.namespace.name})
    forget(workload.cluster, [workload.uid])
    return Response(status=status.HTTP_204_NO_CONTENT)


def deploy_stack(request, cluster):
    data = StackDeploySerializer(data=request.data)
    data.is_valid(raise_exception=True)
    v = data.validated_data
    name = v["name"]
    try:
        stacks.parse(name, v["compose"], None)  # the file first: a bad file creates no stack row
    except stacks.ComposeError as exc:
        if exc.field == "name":
            raise exceptions.ValidationError({"name": [exc.message]}) from None
        raise exceptions.ValidationError({"compose": [str(exc)]}) from None
    client = client_for(cluster)
    try:
        with transaction.atomic():
            namespace = stack_for(request, cluster, name, v.get("project"), field="name")
            project = namespace.project
            plan = stacks.parse(name, v["compose"], project.pk if project else None)
            defaults = container_spec.project_defaults(project)
            for spec in plan["services"]:
                spec["resources"] = _with_defaults(spec.get("resources") or {}, defaults)
            current, _ = stacks.existing(client, name)
            replacing = {svc.id for svc_name, svc in current.items() if svc_name in {sp["name"] for sp in plan["services"]}}
            nodes = sw.ready_nodes(client)
            check_pool(client, project, _sum(sw.task_demand(spec, nodes=nodes) for spec in plan["services"]),
                       replacing=replacing, field="compose")
            result = stacks.deploy(client, name, plan)
        stored = [remember(cluster, attrs) for attrs in result["created"] + result["updated"]]
    except WorkloadError as exc:
        raise _api_error(exc) from None
    finally:
        client.close()
    record("action", namespace, message=f"stack deployed: {len(result['created'])} created, {len(result['updated'])} updated"[:300],
           after={"services": [w.name for w in stored], "networks": result["networks"]})
    return Response({"stack": s.NamespaceSerializer(namespace).data, "networks": result["networks"],
                     "created": [w.name for w in stored[:len(result["created"])]],
                     "updated": [w.name for w in stored[len(result["created"]):]],
                     "services": s.WorkloadSerializer(stored, many=True).data}, status=status.HTTP_201_CREATED)


def _with_defaults(given, defaults):
    out = {section: dict(given.get(section, {})) for section in container_spec.SECTIONS}
    for section, amounts in defaults.items():
        for resource, quantity in amounts.items():
            if resource not in given.get("requests", {}) and resource not in given.get("limits", {}):
                out[section].setdefault(resource, quantity)
    return {section: amounts for section, amounts in out.items() if amounts}


def remove_stack(request, cluster, name):
    namespace = Namespace.objects.restrict(request.user, VIEW).filter(cluster=cluster, name=name).select_related("project").first()
    if namespace is None or name == sw.DEFAULT_STACK:
        raise exceptions.NotFound(f"no stack {name!r} you may see in this cluster")
    if not can_add(request.user, Workload, cluster=cluster, project=namespace.project):
        raise exceptions.PermissionDenied(f"you may not remove stack {name}")
    removed = run(cluster, lambda client: stacks.remove(client, name))
    forget(cluster, [svc["id"] for svc in removed["services"]])
    record("action", namespace, message=f"stack removed: {len(removed['services'])} services, {len(removed['networks'])} networks",
           before={"services": [svc["name"] for svc in removed["services"]], "networks": removed["networks"]})
    return Response(status=status.HTTP_204_NO_CONTENT)


class StackActionsMixin:
    """``POST /clusters/<id>/stacks/`` deploys a stack from a compose file, ``DELETE
    /clusters/<id>/stacks/<name>/`` removes it (Swarm clusters).  Whoever may see the cluster may
    ask; the stack's project decides (as for every workload)."""

    @extend_schema(request=StackDeploySerializer, responses={201: None})
    @action(detail=True, methods=["post"], url_path="stacks")
    def stacks(self, request, pk=None):
        return deploy_stack(request, self._swarm())

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"stacks/(?P<stack>[a-z0-9][-a-z0-9]{0,39})")
    def remove_stack(self, request, pk=None, stack=None):
        return remove_stack(request, self._swarm(), stack)

    def _swarm(self):
        cluster = self.get_object()
        if not cluster.is_swarm:
            raise exceptions.ValidationError({"cluster": ["stacks are for Swarm clusters; on Kubernetes deploy to a namespace"]})
        return cluster


def swarm_cluster(request):
    """The Swarm cluster a ``POST /workloads/`` body names (one the user may see), else None."""
    from clusters.models import Cluster

    data = request.data if isinstance(request.data, dict) else {}
    wanted = data.get("cluster")
    if isinstance(wanted, bool) or not isinstance(wanted, (int, str)) or not str(wanted).isdigit() or not 0 < int(wanted) <= MAX_ID:
        return None
    return Cluster.objects.restrict(request.user, VIEW).filter(pk=int(wanted), kind="swarm").first()
