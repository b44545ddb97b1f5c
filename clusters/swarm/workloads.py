"""Changing services on a Swarm cluster through the Docker SDK: create, scale, update the image,
remove.  Every service Corral makes carries its stack (``com.docker.stack.namespace``, as `docker
stack deploy` sets it) and its project (``corral.io/project``); every engine failure becomes a
WorkloadError with words for people, as for Kubernetes.

A *service spec* here is a plain dict, whether it came from the API or a compose file:
``{"name", "image", "mode": "replicated"|"global", "replicas", "ports": [{"target", "published",
"protocol", "mode"}], "env": [{"name", "value"}], "constraints": [...], "resources": {"requests":
{"cpu", "memory"}, "limits": {...}}, "labels", "container_labels", "command", "healthcheck",
"update_config", "networks"}`` (all but name and image optional)."""

import re
from contextlib import contextmanager
from decimal import Decimal

import docker
import requests
from docker.types import EndpointSpec, Healthcheck, Resources, ServiceMode, UpdateConfig

from clusters.kube.workloads import WorkloadError
from projects.desired import PROJECT_LABEL
from projects.quantities import parse_quantity

STACK_LABEL = "com.docker.stack.namespace"
DEFAULT_STACK = "default"  # the Namespace row of services outside any stack
NANO = Decimal(10) ** 9


def explain(exc, what):
    """The WorkloadError for an engine failure while doing ``what``."""
    if isinstance(exc, docker.errors.NotFound):
        return WorkloadError(404, f"{what}: not found in the swarm ({exc.explanation or exc})", cluster_status=404)
    if isinstance(exc, docker.errors.APIError) and exc.status_code:
        message, code = _untold(exc.explanation or str(exc)), exc.status_code
        if code == 409:
            return WorkloadError(400, f"{what}: already exists in the swarm ({message})", cluster_status=code)
        if code == 400:
            return WorkloadError(400, f"{what}: the swarm refused it: {message}", cluster_status=code)
        if code == 503:
            return WorkloadError(503, f"{what}: the swarm is not available ({message})", cluster_status=code)
        return WorkloadError(502, f"{what}: the engine answered {code}: {message}", cluster_status=code)
    return WorkloadError(503, f"{what}: the engine did not answer ({exc})")


# The engine names the service holding a port or a name; it may be another project's.
_OTHER_SERVICE = re.compile(r"by service '[^']*' \([0-9a-z]+\)")


def _untold(message):
    return _OTHER_SERVICE.sub("by another service", message)


@contextmanager
def engine(what):
    """``with engine("scaling web"): ...`` turns the engine's failures into WorkloadError."""
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise explain(exc, what) from None


def service_name(stack, name):
    """The engine's name of service ``name`` in ``stack``: ``<stack>_<name>`` as `docker stack
    deploy` names it (service names are unique swarm-wide; prefixing keeps one project's names
    from colliding with another's), the bare name outside any stack."""
    return name if stack in (None, "", DEFAULT_STACK) else f"{stack}_{name}"


def stack_labels(stack, project_id):
    labels = {}
    if stack not in (None, "", DEFAULT_STACK):
        labels[STACK_LABEL] = stack
    if project_id is not None:
        labels[PROJECT_LABEL] = str(project_id)
    return labels


# --- resources ----------------------------------------------------------------------------------


def nano_cpus(quantity):
    return int(parse_quantity(quantity) * NANO)


def memory_bytes(quantity):
    return int(parse_quantity(quantity))


def _resources(resources):
    requests_, limits = (resources or {}).get("requests", {}), (resources or {}).get("limits", {})
    kwargs = {}
    if "cpu" in requests_:
        kwargs["cpu_reservation"] = nano_cpus(requests_["cpu"])
    if "memory" in requests_:
        kwargs["mem_reservation"] = memory_bytes(requests_["memory"])
    if "cpu" in limits:
        kwargs["cpu_limit"] = nano_cpus(limits["cpu"])
    if "memory" in limits:
        kwargs["mem_limit"] = memory_bytes(limits["memory"])
    return Resources(**kwargs) if kwargs else None


def task_demand(spec_or_attrs, replicas=None, nodes=1):
    """{"requests.cpu": Decimal cores, "requests.memory": bytes, "limits.cpu", "limits.memory",
    "pods": tasks} one service takes: reservations and limits x replicas (a global service: one task
    per node).  Takes an engine service (its ``Spec``) or a service spec of this module."""
    if "Spec" in spec_or_attrs:
        spec = spec_or_attrs["Spec"]
        mode = spec.get("Mode") or {}
        tasks = nodes if "Global" in mode else int(((mode.get("Replicated") or {}).get("Replicas")) or 0)
        res = (spec.get("TaskTemplate") or {}).get("Resources") or {}
        reserved, limited = res.get("Reservations") or {}, res.get("Limits") or {}
        amounts = {"requests.cpu": Decimal(reserved.get("NanoCPUs") or 0) / NANO,
                   "requests.memory": Decimal(reserved.get("MemoryBytes") or 0),
                   "limits.cpu": Decimal(limited.get("NanoCPUs") or 0) / NANO,
                   "limits.memory": Decimal(limited.get("MemoryBytes") or 0)}
    else:
        spec = spec_or_attrs
        tasks = nodes if spec.get("mode") == "global" else int(spec.get("replicas", 1))
        resources = spec.get("resources") or {}
        amounts = {f"{section}.{resource}": parse_quantity(resources.get(section, {}).get(resource, 0))
                   for section in ("requests", "limits") for resource in ("cpu", "memory")}
    if replicas is not None:
        tasks = replicas
    out = {key: value * tasks for key, value in amounts.items()}
    out["pods"] = Decimal(tasks)
    return out


# --- the SDK's arguments ------------------------------------------------------------------------


def _ports(ports):
    out = []
    for port in ports or ():
        entry = {"Protocol": port.get("protocol", "tcp"), "TargetPort": int(port["target"]),
                 "PublishMode": port.get("mode", "ingress")}
        if port.get("published"):
            entry["PublishedPort"] = int(port["published"])
        out.append(entry)
    return out


def create_kwargs(spec):
    """The keyword arguments of ``client.services.create`` for a service spec."""
    kwargs = {
        "name": spec["name"],
        "labels": dict(spec.get("labels") or {}),
        "container_labels": dict(spec.get("container_labels") or {}),
        "env": [f"{e['name']}={e['value']}" for e in spec.get("env") or ()],
        "constraints": list(spec.get("constraints") or ()),
        "networks": list(spec.get("networks") or ()),
        "endpoint_spec": EndpointSpec(ports=_ports(spec.get("ports"))),
    }
    if spec.get("mode") == "global":
        kwargs["mode"] = ServiceMode("global")
    else:
        kwargs["mode"] = ServiceMode("replicated", replicas=int(spec.get("replicas", 1)))
    resources = _resources(spec.get("resources"))
    if resources is not None:
        kwargs["resources"] = resources
    if spec.get("command"):
        kwargs["args"] = list(spec["command"])  # compose `command` is the container's Args, as in `docker stack deploy`
    if spec.get("healthcheck"):
        kwargs["healthcheck"] = Healthcheck(**spec["healthcheck"])
    if spec.get("update_config"):
        kwargs["update_config"] = UpdateConfig(**spec["update_config"])
    return kwargs


# --- changes ------------------------------------------------------------------------------------


def read(client, service_id):
    """The service as the engine lists it, with its running/desired task counts (API 1.41+)."""
    api = client.api
    with engine(f"reading service {service_id}"):
        try:
            found = api.services(filters={"id": service_id}, status=True)
        except docker.errors.InvalidVersion:
            found = api.services(filters={"id": service_id})
    found = [s for s in found if s["ID"] == service_id]
    if not found:
        raise WorkloadError(404, f"service {service_id} is not in the swarm")
    return found[0]


def create(client, spec):
    """Create the service; returns the engine's view of it (``attrs``)."""
    with engine(f"creating service {spec['name']}"):
        service = client.services.create(spec["image"], **create_kwargs(spec))
    return read(client, service.id)


def get(client, service_id):
    with engine(f"reading service {service_id}"):
        return client.services.get(service_id)


def scale(client, service_id, replicas):
    service = get(client, service_id)
    if "Global" in (service.attrs["Spec"].get("Mode") or {}):
        raise WorkloadError(400, f"service {service.name} is global (one task per node); it cannot be scaled")
    with engine(f"scaling service {service.name}"):
        service.scale(replicas)
    return read(client, service.id)


def update(client, service_id, spec):
    """Replace an existing service's spec (a stack redeployed): the engine rolls the change out
    with the update config given, or the service's own."""
    service = get(client, service_id)
    kwargs = create_kwargs(spec)
    kwargs.pop("name")
    with engine(f"updating service {service.name}"):
        service.update(image=spec["image"], **kwargs)
    return read(client, service.id)


def update_image(client, service_id, image):
    """Roll the service onto ``image``: only the image changes, so the engine follows the service's
    UpdateConfig (parallelism, delay, order, failure action) as `docker service update --image` does."""
    service = get(client, service_id)
    with engine(f"updating service {service.name}"):
        service.update(image=image)
    return read(client, service.id)


def remove(client, service_id):
    service = get(client, service_id)
    with engine(f"removing service {service.name}"):
        service.remove()


def project_services(client, stacks):
    """The engine's services in ``stacks`` (names; "default" means those outside any stack)."""
    stacks = set(stacks)
    with engine("listing services"):
        services = client.services.list()
    return [svc.attrs for svc in services
            if ((svc.attrs["Spec"].get("Labels") or {}).get(STACK_LABEL) or DEFAULT_STACK) in stacks]


def ready_nodes(client):
    with engine("listing nodes"):
        return sum(1 for node in client.nodes.list() if (node.attrs.get("Status") or {}).get("State") == "ready"
                   and (node.attrs.get("Spec") or {}).get("Availability") == "active") or 1
