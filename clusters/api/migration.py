"""Move to Kubernetes through the API: a Swarm service (a workload of kind "service") or a whole
stack (a namespace of a Swarm cluster) is read from its engine, translated by
clusters/swarm/migrate.py, shown for review, and applied into a namespace of a Kubernetes cluster.

    GET  /api/v1/workloads/<id>/migration/[?cluster=<k8s cluster id>&namespace=<name>]
    GET  /api/v1/namespaces/<id>/migration/[?cluster=...&namespace=...]    (a stack)
    POST the same with {"cluster": <k8s cluster id>, "namespace": <name>}: apply

The Swarm side must be visible to the user (else 404); the target is checked exactly as a deploy
is (a namespace the user may see, else 400; the right to add workloads there, else 403).  Every
object is first sent as a server-side dry run; only when all pass are they created, and if one
creation still fails the ones made are deleted again: nothing is left half-applied.
"""


from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters import container_spec
from clusters.api.workload_actions import _remember, _run
from clusters.kube import workloads as kube
from clusters.models import Namespace, Workload
from clusters.swarm import migrate
from portal.api.serializers import StrictSerializer
from portal.audit import record
from portal.permissions import VIEW, can_add
from portal.validators import MAX_ID

PATHS = {"Deployment": "/apis/apps/v1/namespaces/{ns}/deployments", "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
         "Job": "/apis/batch/v1/namespaces/{ns}/jobs", "Service": "/api/v1/namespaces/{ns}/services"}
RESOURCES = {"Deployment": "deployments", "DaemonSet": "daemonsets", "Job": "jobs", "Service": "services"}
NEEDED_PATHS = {"Secret": "/api/v1/namespaces/{ns}/secrets/{name}", "ConfigMap": "/api/v1/namespaces/{ns}/configmaps/{name}",
                "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"}
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class MigrationTargetSerializer(StrictSerializer):
    cluster = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The Kubernetes cluster to move to")
    namespace = serializers.CharField(max_length=63, help_text="A namespace of that cluster you may deploy to")


def _swarm_specs(cluster, services):
    """The engine's specs of ``services`` (workload rows) and its network names by id."""
    import docker.errors

    from clusters.swarm.client import SwarmConnectionError, docker_client

    try:
        client = docker_client(cluster.credentials)
    except SwarmConnectionError as exc:
        raise exceptions.ValidationError({"cluster": [f"the swarm {cluster.name} cannot be reached: {exc}"]}) from None
    try:
        specs = []
        for service in services:
            try:
                specs.append(client.api.inspect_service(service.uid)["Spec"])
            except docker.errors.NotFound:
                raise exceptions.NotFound(f"the service {service.name} is no longer in the swarm") from None
        networks = {n["Id"]: n["Name"] for n in client.api.networks()}
    except docker.errors.APIError as exc:
        raise exceptions.ValidationError({"cluster": [f"the swarm {cluster.name} answered: {exc.explanation or exc}"]}) from None
    except docker.errors.DockerException as exc:
        raise exceptions.ValidationError({"cluster": [f"the swarm {cluster.name} cannot be reached: {exc}"]}) from None
    finally:
        client.close()
    return specs, networks


def _target(user, cluster_id, name, *, deploying):
    namespace = (Namespace.objects.restrict(user, VIEW).select_related("cluster", "project")
                 .filter(cluster_id=cluster_id, name=name).first())
    if namespace is None:
        raise exceptions.ValidationError({"namespace": [f"no namespace {name!r} you may see in cluster {cluster_id}"]})
    if getattr(namespace.cluster, "kind", "kubernetes") != "kubernetes":
        raise exceptions.ValidationError({"cluster": [f"{namespace.cluster.name} is not a Kubernetes cluster"]})
    may_deploy = can_add(user, Workload, cluster=namespace.cluster, project=namespace.project)
    if deploying and not may_deploy:
        raise exceptions.PermissionDenied(f"you may not deploy to namespace {namespace.name}")
    return namespace, may_deploy


def _with_project_defaults(translation, project):
    """Containers get the project's container defaults as the deploy does; a request over a
    limit is a 400 naming the service."""
    for obj in translation.objects:
        template = (obj.get("spec") or {}).get("template")
        if not template:
            continue
        for container in template["spec"]["containers"]:
            try:
                resources = container_spec.with_defaults(container.get("resources") or {}, project)
            except serializers.ValidationError as exc:
                detail = exc.detail.get("resources") if isinstance(exc.detail, dict) else exc.detail
                raise exceptions.ValidationError({"resources": [f"{obj['kind']} {obj['metadata']['name']}: {' '.join(map(str, detail))}"]}) from None
            if resources:
                container["resources"] = resources


def _exists(api, path):
    """Whether the object exists; only its metadata is asked for (Corral never reads a Secret's data)."""
    try:
        api.call_api(path, "GET", header_params={"Accept": METADATA_ONLY}, auth_settings=["BearerToken"],
                     _preload_content=False, _return_http_data_only=True, _request_timeout=api.corral_timeout)
    except Exception as exc:  # noqa: BLE001 - an ApiException 404 is "missing"; anything else "unknown"
        return False if getattr(exc, "status", None) == 404 else None
    return True


def _check_needs(api, namespace, needs):
    for item in needs:
        item["exists"] = _exists(api, NEEDED_PATHS[item["kind"]].format(ns=namespace, name=item["name"]))
    return needs


def _refusal(exc):
    """The namespace's quota refusing an object is the user's problem to fix (400), not Corral's
    credentials failing (which is what the cluster's other 403s mean here)."""
    if exc.cluster_status == 403 and "exceeded quota" in exc.message:
        return 400
    return exc.status if exc.status != 404 else 400


def _create_all(api, namespace, objects):
    """Dry-run every object, then create them; on a failure delete what this call made."""
    for obj in objects:
        try:
            kube.call(api, "POST", PATHS[obj["kind"]].format(ns=namespace) + "?dryRun=All", obj)
        except kube.WorkloadError as exc:
            raise kube.WorkloadError(_refusal(exc), f"{obj['kind']} {obj['metadata']['name']}: {exc.message}; nothing was applied", exc.cluster_status) from None
    made = []
    try:
        for obj in objects:
            made.append(kube.call(api, "POST", PATHS[obj["kind"]].format(ns=namespace), obj))
    except kube.WorkloadError as exc:
        for done in reversed(made):
            try:
                kube.call(api, "DELETE", f"{PATHS[done['kind']].format(ns=namespace)}/{done['metadata']['name']}",
                          {"propagationPolicy": "Background"})
            except kube.WorkloadError:
                pass  # best effort: the error below names what failed
        raise kube.WorkloadError(_refusal(exc), f"{obj['kind']} {obj['metadata']['name']}: {exc.message}; "
                                             f"the {len(made)} object(s) created before it were deleted again", exc.cluster_status) from None
    return made


def sources(user, obj):
    """(swarm cluster, services) of a Swarm service or stack, or a 400 when it is not Swarm."""
    cluster = obj.cluster
    if getattr(cluster, "kind", "kubernetes") != "swarm":
        raise exceptions.ValidationError({"detail": "only Docker Swarm services and stacks move to Kubernetes"})
    if isinstance(obj, Workload):
        if obj.kind != "service":
            raise exceptions.ValidationError({"detail": "only Docker Swarm services move to Kubernetes"})
        return cluster, [obj]
    services = list(Workload.objects.restrict(user, VIEW).filter(namespace=obj, kind="service").order_by("name"))
    if not services:
        raise exceptions.ValidationError({"detail": f"the stack {obj.name} has no services you may see"})
    return cluster, services


def targets(user):
    """The Kubernetes namespaces ``user`` may deploy into (for the page's choice)."""
    namespaces = (Namespace.objects.restrict(user, VIEW).select_related("cluster", "project")
                  .filter(cluster__kind="kubernetes").order_by("cluster__name", "name"))
    return [ns for ns in namespaces if can_add(user, Workload, cluster=ns.cluster, project=ns.project)]


def migrate_source(user, source, wanted=None, *, apply=False, read_only=False):
    """Preview (``apply=False``) or apply the move of ``source`` (a service or stack the user may
    see) into ``wanted`` = {"cluster", "namespace"} (optional for a preview).  Returns the answer's
    body; raises DRF API exceptions naming the problem."""
    cluster, services = sources(user, source)
    if apply and not wanted:
        raise exceptions.ValidationError({"namespace": ["choose the Kubernetes cluster and namespace to move to"]})
    target, may_deploy = _target(user, wanted["cluster"], wanted["namespace"], deploying=apply) if wanted else (None, None)
    if apply and read_only:
        raise exceptions.PermissionDenied("read-only token: this request would change something")

    specs, networks = _swarm_specs(cluster, services)
    try:
        translation = migrate.translate_stack(specs, networks=networks)
    except ValueError as exc:
        raise exceptions.ValidationError({"detail": str(exc)}) from None
    if target is not None:
        _with_project_defaults(translation, target.project)
        translation.objects = migrate.with_namespace(translation.objects, target.name)
    body = translation.as_dict(target.name if target else None)
    body["source"] = {"cluster": cluster.pk, "services": [{"id": s.pk, "name": s.name} for s in services]}
    body["target"] = {"cluster": target.cluster_id, "namespace": target.name, "may_apply": may_deploy} if target else None
    if not apply:
        if target is not None and translation.needs:
            _run(target.cluster, lambda api: _check_needs(api, target.name, translation.needs))
        return body

    def create(api):
        made = _create_all(api, target.name, translation.objects)
        _check_needs(api, target.name, translation.needs)
        return made

    made = _run(target.cluster, create)
    created = []
    for obj in made:
        row = _remember(target.cluster, RESOURCES[obj["kind"]], obj)
        created.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "id": row.pk if row is not None else None})
        if row is not None and obj["kind"] != "Service":
            record("create", row, after={"migrated_from": (obj["metadata"].get("annotations") or {}).get("corral.io/swarm-service"),
                                         "swarm_cluster": cluster.pk, "namespace": target.name})
    record("action", source, message=f"moved to Kubernetes: {target.cluster.name}/{target.name}",
           after={"created": [f"{c['kind']}/{c['name']}" for c in created],
                  "untranslated": [f"{u['service']}: {u['setting']}" for u in translation.untranslated]})
    body["created"] = created
    body["needs"] = translation.needs
    return body


class MigrationMixin:
    """The ``migration`` action for a Swarm service (workloads) or a stack (namespaces)."""

    @extend_schema(
        parameters=[OpenApiParameter("cluster", int, description="Kubernetes cluster id (preview with its namespace)"),
                    OpenApiParameter("namespace", str, description="namespace in that cluster")],
        request=MigrationTargetSerializer, responses={200: dict, 201: dict},
        description="Move a Docker Swarm service or stack to Kubernetes: GET previews the manifests (YAML) and what could not "
                    "be translated; POST applies them into a namespace you may deploy to.")
    @action(detail=True, methods=["get", "post"])
    def migration(self, request, pk=None):
        # 404 unless the user may see the service or stack.  Not self.get_object(): the list
        # filters would read ?cluster=&namespace= (the target) as filters on the source.
        source = get_object_or_404(self.get_queryset(), pk=pk)
        self.check_object_permissions(request, source)
        if request.method == "POST":
            data = MigrationTargetSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            wanted = data.validated_data
        elif request.query_params.get("cluster") or request.query_params.get("namespace"):
            given = {k: request.query_params.get(k) for k in ("cluster", "namespace")}
            if (given["cluster"] or "").isascii() and (given["cluster"] or "").isdigit():
                given["cluster"] = int(given["cluster"])  # a query parameter is text; the body's is a number
            data = MigrationTargetSerializer(data=given)
            data.is_valid(raise_exception=True)
            wanted = data.validated_data
        else:
            wanted = None
        if request.method != "POST":
            return Response(migrate_source(request.user, source, wanted))
        body = migrate_source(request.user, source, wanted, apply=True, read_only=getattr(request.auth, "read_only", False))
        return Response(body, status=status.HTTP_201_CREATED)
