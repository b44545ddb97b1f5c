"""Deploy and remove a Swarm stack from a compose file, as `docker stack deploy` does (the Docker
SDK has none): the file's networks become overlay networks named ``<stack>_<name>`` and its services
``<stack>_<service>``, all labelled with the stack (``com.docker.stack.namespace``) and the project.

Corral takes a clear subset of the compose format and refuses the rest with a ComposeError naming
the key (``services.web.volumes``): a key silently ignored would deploy something other than what
was asked.  The whole file is checked before the engine is touched; a failure while creating
removes what this deploy created."""

import re
import time
from decimal import Decimal

import docker
import yaml

from clusters.container_spec import ENV_NAME
from clusters.kube.workloads import WorkloadError
from clusters.swarm import workloads as sw

TOP_LEVEL = {"version", "services", "networks", "name"}
SERVICE_KEYS = {"image", "deploy", "ports", "environment", "command", "healthcheck", "labels", "networks"}
DEPLOY_KEYS = {"mode", "replicas", "resources", "placement", "update_config", "labels"}
RESOURCE_KEYS = {"reservations", "limits"}
AMOUNT_KEYS = {"cpus", "memory"}
PLACEMENT_KEYS = {"constraints"}
UPDATE_KEYS = {"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}
HEALTH_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
PORT_KEYS = {"target", "published", "protocol", "mode"}
NETWORK_KEYS = {"driver", "attachable", "labels", "external", "name"}
SERVICE_NETWORK_KEYS = {"aliases"}

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
STACK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SHORT_PORT = re.compile(r"^(?:(?P<published>\d+):)?(?P<target>\d+)(?:/(?P<protocol>tcp|udp|sctp))?$")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DURATION_UNITS = {"ns": 1, "us": 10 ** 3, "µs": 10 ** 3, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9}
BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$", re.IGNORECASE)
BYTE_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}
MAX_SERVICES = 100
MAX_FILE = 256 * 1024
NETWORK_WAIT_SECONDS = 20


class ComposeError(Exception):
    """``field`` names where in the file (``services.web.deploy.replicas``)."""

    def __init__(self, field, message):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def _mapping(value, field):
    if not isinstance(value, dict):
        raise ComposeError(field, "must be a mapping")
    return value


def _only(value, allowed, field):
    _mapping(value, field)
    for key in value:
        if not isinstance(key, str):
            raise ComposeError(field, f"{key!r} is not a key")
        if key.startswith("x-"):
            continue  # compose extension fields: for the author, ignored by every tool
        if key not in allowed:
            raise ComposeError(f"{field}.{key}" if field else key,
                               f"not supported by Corral's stack deploy (supported here: {', '.join(sorted(allowed))})")
    return value


def _int(value, field, low=0, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ComposeError(field, "must be a whole number")
    if value < low or (high is not None and value > high):
        raise ComposeError(field, f"must be between {low} and {high}" if high is not None else f"must be at least {low}")
    return value


def duration_ns(value, field):
    """Compose durations ("10s", "1m30s", "500ms") in nanoseconds."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not text or not re.fullmatch(f"(?:{DURATION.pattern})+", text):
        raise ComposeError(field, f"{value!r} is not a duration (examples: 10s, 1m30s, 500ms)")
    return int(sum(Decimal(n) * DURATION_UNITS[unit] for n, unit in DURATION.findall(text)))


def memory_quantity(value, field):
    """Compose memory ("64M", "1g", "512mb", a number of bytes) as a Kubernetes quantity string."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    match = BYTES.match(str(value).strip()) if isinstance(value, str) else None
    if not match or Decimal(match.group(1)) <= 0:
        raise ComposeError(field, f"{value!r} is not an amount of memory (examples: 64M, 1G, 512mb)")
    return str(int(Decimal(match.group(1)) * BYTE_UNITS[match.group(2).lower()]))


def cpu_quantity(value, field):
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, bool) else None
    except ArithmeticError:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise ComposeError(field, f"{value!r} is not a number of CPUs (examples: 0.5, 2)")
    return str(amount)


def _str_list(value, field):
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        raise ComposeError(field, "must be a string or a list of strings")
    return [str(v) for v in value]


def _labels(value, field):
    """A compose label list ("a=b") or mapping, as a dict."""
    if isinstance(value, list):
        out = {}
        for item in value:
            if not isinstance(item, str) or not item:
                raise ComposeError(field, f"{item!r} is not KEY=VALUE")
            key, _, text = item.partition("=")
            out[key] = text
        return out
    return {str(k): "" if v is None else str(v) for k, v in _mapping(value, field).items()}


def _environment(value, field):
    if isinstance(value, list):
        pairs = []
        for item in value:
            if not isinstance(item, str) or "=" not in item:
                raise ComposeError(field, f"{item!r} is not NAME=VALUE (a variable taken from the deploying shell has no meaning here)")
            pairs.append(item.split("=", 1))
    else:
        pairs = [(k, v) for k, v in _mapping(value, field).items()]
    out = []
    for name, text in pairs:
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ComposeError(field, f"{name!r} is not a valid variable name")
        if text is None:
            raise ComposeError(f"{field}.{name}", "has no value (a variable taken from the deploying shell has no meaning here)")
        if isinstance(text, (dict, list)):
            raise ComposeError(f"{field}.{name}", "must be text")
        out.append({"name": name, "value": str(text).lower() if isinstance(text, bool) else str(text)})
    return out


def _ports(value, field):
    if not isinstance(value, list):
        raise ComposeError(field, "must be a list")
    out, seen = [], set()
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            match = SHORT_PORT.match(str(item).strip())
            if not match:
                raise ComposeError(where, f"{item!r} is not PUBLISHED:TARGET[/PROTOCOL] (an address or a range is not supported here)")
            port = {"target": int(match["target"]), "protocol": match["protocol"] or "tcp", "mode": "ingress"}
            if match["published"]:
                port["published"] = int(match["published"])
        else:
            _only(item, PORT_KEYS, where)
            if "target" not in item:
                raise ComposeError(f"{where}.target", "is required")
            port = {"target": item["target"], "protocol": item.get("protocol", "tcp"), "mode": item.get("mode", "ingress")}
            if item.get("published") is not None:
                port["published"] = item["published"]
            if port["protocol"] not in ("tcp", "udp", "sctp"):
                raise ComposeError(f"{where}.protocol", "must be tcp, udp or sctp")
            if port["mode"] not in ("ingress", "host"):
                raise ComposeError(f"{where}.mode", "must be ingress or host")
        for key in ("target", "published"):
            if key in port:
                if isinstance(port[key], str) and port[key].isdigit():
                    port[key] = int(port[key])
                _int(port[key], f"{where}.{key}", 1, 65535)
        if "published" in port:
            if (port["published"], port["protocol"]) in seen:
                raise ComposeError(where, f"port {port['published']}/{port['protocol']} is published twice")
            seen.add((port["published"], port["protocol"]))
        out.append(port)
    return out


def _healthcheck(value, field):
    _only(value, HEALTH_KEYS, field)
    if value.get("disable") is True:
        return {"test": ["NONE"]}
    out = {}
    if "test" in value:
        test = value["test"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test) or \
                test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ComposeError(f"{field}.test", 'must be a command string or a list starting with "CMD", "CMD-SHELL" or "NONE"')
        out["test"] = test
    for key in ("interval", "timeout", "start_period"):
        if key in value:
            out[key] = duration_ns(value[key], f"{field}.{key}")
    if "retries" in value:
        out["retries"] = _int(value["retries"], f"{field}.retries", 0, 1000)
    return out


def _update_config(value, field):
    _only(value, UPDATE_KEYS, field)
    out = {}
    if "parallelism" in value:
        out["parallelism"] = _int(value["parallelism"], f"{field}.parallelism", 0, 1000)
    for key in ("delay", "monitor"):
        if key in value:
            out[key] = duration_ns(value[key], f"{field}.{key}")
    if "failure_action" in value:
        if value["failure_action"] not in ("pause", "continue", "rollback"):
            raise ComposeError(f"{field}.failure_action", "must be pause, continue or rollback")
        out["failure_action"] = value["failure_action"]
    if "max_failure_ratio" in value:
        ratio = value["max_failure_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ComposeError(f"{field}.max_failure_ratio", "must be a number from 0 to 1")
        out["max_failure_ratio"] = float(ratio)
    if "order" in value:
        if value["order"] not in ("stop-first", "start-first"):
            raise ComposeError(f"{field}.order", "must be stop-first or start-first")
        out["order"] = value["order"]
    return out


def _deploy(value, field, spec):
    _only(value, DEPLOY_KEYS, field)
    mode = value.get("mode", "replicated")
    if mode not in ("replicated", "global"):
        raise ComposeError(f"{field}.mode", "must be replicated or global")
    spec["mode"] = mode
    if "replicas" in value:
        if mode == "global":
            raise ComposeError(f"{field}.replicas", "a global service runs one task per node; give no replicas")
        spec["replicas"] = _int(value["replicas"], f"{field}.replicas", 0, 1000)
    if "resources" in value:
        resources = {}
        for section, name in _only(value["resources"], RESOURCE_KEYS, f"{field}.resources").items():
            where = f"{field}.resources.{section}"
            amounts = _only(name or {}, AMOUNT_KEYS, where)
            target = resources.setdefault("requests" if section == "reservations" else "limits", {})
            if "cpus" in amounts:
                target["cpu"] = cpu_quantity(amounts["cpus"], f"{where}.cpus")
            if "memory" in amounts:
                target["memory"] = memory_quantity(amounts["memory"], f"{where}.memory")
        for resource in ("cpu", "memory"):
            low, high = resources.get("requests", {}).get(resource), resources.get("limits", {}).get(resource)
            if low is not None and high is not None and Decimal(low) > Decimal(high):
                name = "cpus" if resource == "cpu" else "memory"
                raise ComposeError(f"{field}.resources.reservations.{name}", "is more than the limit")
        spec["resources"] = {k: v for k, v in resources.items() if v}
    if "placement" in value:
        placement = _only(value["placement"], PLACEMENT_KEYS, f"{field}.placement")
        spec["constraints"] = _str_list(placement.get("constraints", []), f"{field}.placement.constraints")
    if "update_config" in value:
        spec["update_config"] = _update_config(value["update_config"], f"{field}.update_config")
    if "labels" in value:
        spec["labels"].update(_labels(value["labels"], f"{field}.labels"))


def parse(stack, text, project_id):
    """The stack's networks and service specs from a compose file; ComposeError naming the field
    for anything wrong or unsupported.  Returns ``{"networks": [{"name", "driver", "attachable",
    "labels", "external"}], "services": [spec, ...]}`` with the engine's names."""
    if not isinstance(stack, str) or len(stack) > 40 or not STACK_NAME.match(stack) or stack == sw.DEFAULT_STACK:
        raise ComposeError("name", f"{stack!r} is not a stack name: lower-case letters, digits and '-', at most 40, not 'default'")
    if not isinstance(text, str) or not text.strip():
        raise ComposeError("compose", "give the compose file's text")
    if len(text) > MAX_FILE:
        raise ComposeError("compose", f"the file is larger than {MAX_FILE // 1024} KiB")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ComposeError("compose", f"not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(document, dict):
        raise ComposeError("compose", "must be a YAML mapping with a services key")
    _only(document, TOP_LEVEL, "")
    services = document.get("services")
    if not isinstance(services, dict) or not services:
        raise ComposeError("services", "must name at least one service")
    if len(services) > MAX_SERVICES:
        raise ComposeError("services", f"at most {MAX_SERVICES} services in one stack")
    labels = sw.stack_labels(stack, project_id)

    networks, declared = [], {}
    for name, options in (_mapping(document.get("networks") or {}, "networks")).items():
        where = f"networks.{name}"
        if not isinstance(name, str) or not NAME.match(name):
            raise ComposeError(where, "is not a valid network name")
        options = _only(options or {}, NETWORK_KEYS, where)
        external = options.get("external", False)
        if not isinstance(external, bool):
            raise ComposeError(f"{where}.external", "must be true or false")
        if external:
            engine_name = options.get("name", name)
        else:
            if "name" in options:
                raise ComposeError(f"{where}.name", "a network the stack creates is named <stack>_<network>; give name only with external: true")
            engine_name = f"{stack}_{name}"
        driver = options.get("driver", "overlay")
        if driver != "overlay":
            raise ComposeError(f"{where}.driver", "a stack's networks are overlay networks")
        attachable = options.get("attachable", False)
        if not isinstance(attachable, bool):
            raise ComposeError(f"{where}.attachable", "must be true or false")
        declared[name] = engine_name
        networks.append({"name": engine_name, "driver": driver, "attachable": attachable, "external": external,
                         "labels": {**_labels(options.get("labels") or {}, f"{where}.labels"), **labels}})

    specs, needs_default = [], False
    for name, options in services.items():
        where = f"services.{name}"
        if not isinstance(name, str) or not STACK_NAME.match(name) or len(sw.service_name(stack, name)) > 63:
            raise ComposeError(where, "a service name is lower-case letters, digits and '-' (with the stack's name at most 63)")
        options = _only(options, SERVICE_KEYS, where)
        image = options.get("image")
        if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
            raise ComposeError(f"{where}.image", "is required: an image reference with no spaces, e.g. nginx:1.27")
        spec = {"name": sw.service_name(stack, name), "image": image, "mode": "replicated", "replicas": 1,
                "labels": {}, "container_labels": {}, "env": [], "ports": [], "constraints": [], "networks": []}
        if "deploy" in options:
            _deploy(options["deploy"], f"{where}.deploy", spec)
        spec["labels"].update({**labels, "com.docker.stack.image": image})
        if "ports" in options:
            spec["ports"] = _ports(options["ports"], f"{where}.ports")
        if "environment" in options:
            spec["env"] = _environment(options["environment"], f"{where}.environment")
        if "command" in options:
            command = options["command"]
            spec["command"] = command.split() if isinstance(command, str) else _str_list(command, f"{where}.command")
        if "healthcheck" in options:
            spec["healthcheck"] = _healthcheck(options["healthcheck"], f"{where}.healthcheck")
        if "labels" in options:
            spec["container_labels"] = _labels(options["labels"], f"{where}.labels")
        spec["container_labels"].update({k: v for k, v in labels.items() if k == sw.STACK_LABEL})
        wanted = options.get("networks")
        if wanted is None:
            needs_default = True
            spec["networks"] = [f"{stack}_default"]
        else:
            if isinstance(wanted, dict):
                for network, extra in wanted.items():
                    _only(extra or {}, SERVICE_NETWORK_KEYS, f"{where}.networks.{network}")
                    if extra and "aliases" in extra:
                        raise ComposeError(f"{where}.networks.{network}.aliases", "not supported by Corral's stack deploy")
                wanted = list(wanted)
            for network in _str_list(wanted, f"{where}.networks"):
                if network == "default":
                    needs_default = True
                    spec["networks"].append(f"{stack}_default")
                elif network in declared:
                    spec["networks"].append(declared[network])
                else:
                    raise ComposeError(f"{where}.networks", f"network {network!r} is not declared under the top-level networks")
        specs.append(spec)
    if needs_default and "default" not in declared:
        networks.append({"name": f"{stack}_default", "driver": "overlay", "attachable": False, "external": False, "labels": dict(labels)})
    return {"networks": networks, "services": specs}


def existing(client, stack):
    """The engine's services and networks of ``stack``, by name."""
    with sw.engine(f"reading stack {stack}"):
        services = {s.name: s for s in client.services.list(filters={"label": f"{sw.STACK_LABEL}={stack}"})}
        networks = {n.name: n for n in client.networks.list(filters={"label": f"{sw.STACK_LABEL}={stack}"})}
    return services, networks


def deploy(client, stack, plan):
    """Create the plan's networks and services (a service of the same name is updated, as a
    redeploy does); on failure, remove what this call created and raise.  Returns
    ``{"created": [attrs], "updated": [attrs], "networks": [names]}``."""
    services, networks = existing(client, stack)
    made_networks, made_services, result = [], [], {"created": [], "updated": [], "networks": []}
    try:
        for network in plan["networks"]:
            if network["external"]:
                with sw.engine(f"finding external network {network['name']}"):
                    if not client.networks.list(names=[network["name"]]):
                        raise WorkloadError(400, f"external network {network['name']!r} does not exist in the swarm")
                continue
            if network["name"] in networks:
                continue
            with sw.engine(f"creating network {network['name']}"):
                made = client.networks.create(network["name"], driver="overlay", attachable=network["attachable"],
                                              labels=network["labels"], scope="swarm")
            made_networks.append(made)
            result["networks"].append(network["name"])
        for spec in plan["services"]:
            if spec["name"] in services:
                result["updated"].append(sw.update(client, services[spec["name"]].id, spec))
            else:
                attrs = sw.create(client, spec)
                made_services.append(attrs["ID"])
                result["created"].append(attrs)
    except WorkloadError:
        _undo(client, made_services, made_networks)
        raise
    return result


def _undo(client, service_ids, networks):
    for service_id in service_ids:
        try:
            client.services.get(service_id).remove()
        except Exception:  # noqa: BLE001 - best effort: the error being reported is the first one
            pass
    for network in networks:
        try:
            network.remove()
        except Exception:  # noqa: BLE001
            pass


def remove(client, stack):
    """Remove the stack's services, then its networks (as `docker stack rm`); returns what went."""
    services, networks = existing(client, stack)
    removed = {"services": [], "networks": []}
    for name, service in sorted(services.items()):
        with sw.engine(f"removing service {name}"):
            service.remove()
        removed["services"].append({"id": service.id, "name": name})
    for name, network in sorted(networks.items()):
        # A network is in use until the removed services' tasks are gone: the engine refuses until then.
        deadline = time.monotonic() + NETWORK_WAIT_SECONDS
        while True:
            try:
                network.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError as exc:
                if time.monotonic() > deadline:
                    raise sw.explain(exc, f"removing network {name} (its services are removed)") from None
                time.sleep(0.5)
            except (docker.errors.DockerException, OSError) as exc:
                raise sw.explain(exc, f"removing network {name}") from None
        removed["networks"].append(name)
    return removed
