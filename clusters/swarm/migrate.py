"""Move to Kubernetes: a Docker Swarm service spec, as the engine returns it
(``client.services.get(id).attrs["Spec"]``), becomes the equivalent Kubernetes objects, and
everything that could not be carried over is listed with the reason.

Pure functions, no cluster or database:

    translate_service(spec)   -> Translation for one service
    translate_stack(specs)    -> Translation for several (a stack), names shortened like the stack's DNS
    to_yaml(objects)          -> one YAML document per object, for review

What maps:
- replicated mode -> Deployment (replicas); global -> DaemonSet; replicated-job -> Job
- published/target ports -> a Service (ingress mode) or a hostPort (host mode); a service without ports
  still gets a headless Service so that its name resolves as it did on the Swarm network; dnsrr -> headless
- command/args, env, working dir, numeric user, capabilities, read-only root, stop grace period, hosts
- reservations -> requests, limits -> limits (NanoCPUs -> millicores, bytes -> Mi/Gi when exact)
- constraints node.labels.X, node.role, node.hostname, node.platform.os/arch -> required node affinity;
  spread preferences -> topology spread constraints; at most one replica per node -> pod anti-affinity
- healthcheck -> exec liveness and readiness probes (interval, timeout, retries, start period)
- update config -> RollingUpdate (parallelism and order -> maxSurge/maxUnavailable)
- Docker secrets -> Secret volumes, configs -> ConfigMap volumes, mounted at the same paths; named
  volumes -> PersistentVolumeClaims, tmpfs -> memory emptyDir.  Corral never reads a secret's or a
  config's contents: the Secrets, ConfigMaps and claims the user must create are listed (``needs``).
- service and container labels -> labels (annotations when not a valid Kubernetes label)

Everything else that is set in the spec is listed in ``untranslated`` as
``{"service", "setting", "value", "reason"}``; defaults the engine fills in are not noise there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import yaml

MIGRATED_LABEL = "corral.io/migrated-from"
NAME_LABEL = "app.kubernetes.io/name"
STACK_LABEL = "com.docker.stack.namespace"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONSTRAINT = re.compile(r"^\s*([^=!\s]+)\s*(==|!=)\s*(.+?)\s*$")
ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "arm": "arm",
        "s390x": "s390x", "ppc64le": "ppc64le", "i386": "386", "386": "386"}
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
SECOND = 1_000_000_000
# Docker's healthcheck defaults (a duration of 0 in the spec means "the default").
HEALTH_INTERVAL, HEALTH_TIMEOUT, HEALTH_RETRIES = 30, 30, 3


@dataclass
class Translation:
    objects: list = field(default_factory=list)  # Kubernetes objects (dicts), workloads first
    untranslated: list = field(default_factory=list)  # {"service", "setting", "value", "reason"}
    needs: list = field(default_factory=list)  # {"kind": "Secret"|"ConfigMap"|"PersistentVolumeClaim", "name", "keys", "swarm_name", "service"}
    names: dict = field(default_factory=dict)  # Swarm service name -> Kubernetes name

    def as_dict(self, namespace=None):
        return {"namespace": namespace, "names": self.names, "objects": self.objects, "yaml": to_yaml(self.objects),
                "untranslated": self.untranslated, "needs": self.needs}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # plain YAML for people, no &anchors
        return True


def to_yaml(objects) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False) if objects else ""


def kube_name(name: str) -> str:
    """A DNS-1123 label from a Swarm name (``shop_web`` -> ``shop-web``)."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return text or "service"


def short_name(spec) -> str:
    """The service's name without its stack's prefix: what other services of the stack call it."""
    name = spec.get("Name") or ""
    stack = (spec.get("Labels") or {}).get(STACK_LABEL)
    if stack and name.startswith(stack + "_") and len(name) > len(stack) + 1:
        return name[len(stack) + 1:]
    return name


def _object_name(swarm_name, stack):
    if stack and swarm_name.startswith(stack + "_"):
        swarm_name = swarm_name[len(stack) + 1:]
    return kube_name(swarm_name)


def _seconds(nanos, minimum=1):
    return max(minimum, math.ceil((nanos or 0) / SECOND))


def _quantity_bytes(amount: int) -> str:
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if amount % size == 0:
            return f"{amount // size}{suffix}"
    return str(amount)


def _quantity_cpu(nanos: int) -> str:
    millis = math.ceil(nanos / 1_000_000)
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def _duration(nanos):
    seconds = (nanos or 0) / SECOND
    return f"{seconds:g}s"


class _Service:
    """The translation of one service spec: walks every part of it, so that whatever it does not
    consume is listed as untranslated."""

    def __init__(self, spec, out: Translation, stack=None, networks=None):
        self.spec, self.out = spec, out
        self.networks = networks or {}
        self.swarm_name = spec.get("Name") or "service"
        self.stack = stack if stack is not None else (spec.get("Labels") or {}).get(STACK_LABEL)
        self.name = _object_name(self.swarm_name, self.stack)

    def skip(self, setting, value, reason):
        self.out.untranslated.append({"service": self.swarm_name, "setting": setting, "value": value, "reason": reason})

    def need(self, kind, name, swarm_name, keys=()):
        for item in self.out.needs:
            if item["kind"] == kind and item["name"] == name:
                if self.swarm_name not in item["services"]:
                    item["services"].append(self.swarm_name)
                for key in keys:
                    if key not in item["keys"]:
                        item["keys"].append(key)
                return
        self.out.needs.append({"kind": kind, "name": name, "swarm_name": swarm_name, "keys": list(keys), "services": [self.swarm_name]})

    # -- labels ---------------------------------------------------------------------------------

    def _labels(self, given, where):
        labels, annotations = {}, {}
        for key, value in sorted((given or {}).items()):
            if key == "com.docker.stack.image":
                continue  # the image is in the container spec
            value = "" if value is None else str(value)
            prefix, _, name = key.rpartition("/")
            key_ok = bool(LABEL_NAME.match(name)) and len(name) <= 63 and (not prefix or (len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix)))
            if not key_ok:
                self.skip(f"{where}.{key}", value, "not a valid Kubernetes label or annotation key")
            elif len(value) <= 63 and LABEL_VALUE.match(value):
                labels[key] = value
            else:
                annotations[key] = value
        return labels, annotations

    # -- the parts ------------------------------------------------------------------------------

    def translate(self):
        spec = dict(self.spec)
        task = dict(spec.pop("TaskTemplate", None) or {})
        container_spec = dict(task.pop("ContainerSpec", None) or {})
        spec.pop("Name", None)
        labels, annotations = self._labels(spec.pop("Labels", None), "Labels")
        selector = {NAME_LABEL: self.name}
        meta = {"name": self.name, "labels": {**labels, NAME_LABEL: self.name, MIGRATED_LABEL: "swarm"}}
        annotations["corral.io/swarm-service"] = self.swarm_name
        meta["annotations"] = annotations

        pod_labels, pod_annotations = self._labels(container_spec.pop("Labels", None), "TaskTemplate.ContainerSpec.Labels")
        pod_spec, container = self._container(container_spec, task)
        self._placement(task.pop("Placement", None) or {}, pod_spec)
        self._resources(task.pop("Resources", None) or {}, container)
        self._networks(task.pop("Networks", None) or spec.pop("Networks", None) or [])
        for key in ("ForceUpdate", "Runtime"):
            value = task.pop(key, None)
            if key == "Runtime" and value not in (None, "container"):
                self.skip("TaskTemplate.Runtime", value, "only container tasks have a Kubernetes equivalent")
        log_driver = task.pop("LogDriver", None)
        if log_driver:
            self.skip("TaskTemplate.LogDriver", log_driver, "Kubernetes collects container output itself; set up logging on the cluster")
        restart = task.pop("RestartPolicy", None) or {}
        for key, value in task.items():
            if value not in (None, {}, []):
                self.skip(f"TaskTemplate.{key}", value, "no Kubernetes equivalent in this translation")

        mode = spec.pop("Mode", None) or {"Replicated": {}}
        update = spec.pop("UpdateConfig", None) or {}
        rollback = spec.pop("RollbackConfig", None)
        if rollback:
            self.skip("RollbackConfig", rollback, "Kubernetes rolls back on request (`kubectl rollout undo`), with no configuration of its own")
        endpoint = spec.pop("EndpointSpec", None) or {}
        for key, value in spec.items():
            if value not in (None, {}, []):
                self.skip(key, value, "no Kubernetes equivalent in this translation")

        pod_spec["containers"] = [container]
        template = {"metadata": {"labels": {**pod_labels, **selector}}, "spec": pod_spec}
        if pod_annotations:
            template["metadata"]["annotations"] = pod_annotations
        workload = self._workload(mode, meta, selector, template, update, restart)
        service = self._ports(endpoint, container, selector, meta, workload is not None)
        if workload is not None:
            self.out.objects.append(workload)
        if service is not None:
            self.out.objects.append(service)
        self.out.names[self.swarm_name] = self.name

    def _container(self, c, task):
        container = {"name": self.name[:63], "image": c.pop("Image", None) or ""}
        pod = {}
        if not container["image"]:
            self.skip("TaskTemplate.ContainerSpec.Image", None, "the service names no image")
        if c.get("Command"):
            container["command"] = list(c.pop("Command"))
        if c.get("Args"):
            container["args"] = list(c.pop("Args"))
        env = []
        for entry in c.pop("Env", None) or []:
            name, sep, value = str(entry).partition("=")
            if not sep:
                self.skip("TaskTemplate.ContainerSpec.Env", entry, "a variable without a value (taken from the engine's environment) has no equivalent")
                continue
            env.append({"name": name, "value": value})
        if env:
            container["env"] = env
        if c.get("Dir"):
            container["workingDir"] = c.pop("Dir")
        security, pod_security = {}, {}
        user = c.pop("User", None)
        if user:
            uid, _, gid = str(user).partition(":")
            if uid.isdigit() and (not gid or gid.isdigit()):
                security["runAsUser"] = int(uid)
                if gid:
                    security["runAsGroup"] = int(gid)
            else:
                self.skip("TaskTemplate.ContainerSpec.User", user, "Kubernetes runs as a numeric user id (runAsUser); give the user's uid")
        groups = c.pop("Groups", None) or []
        if groups:
            if all(str(g).isdigit() for g in groups):
                pod_security["supplementalGroups"] = [int(g) for g in groups]
            else:
                self.skip("TaskTemplate.ContainerSpec.Groups", groups, "Kubernetes takes numeric group ids (supplementalGroups)")
        caps = {}
        if c.get("CapabilityAdd"):
            caps["add"] = [str(cap).upper().removeprefix("CAP_") for cap in c.pop("CapabilityAdd")]
        if c.get("CapabilityDrop"):
            caps["drop"] = [str(cap).upper().removeprefix("CAP_") for cap in c.pop("CapabilityDrop")]
        if caps:
            security["capabilities"] = caps
        if c.pop("ReadOnly", False):
            security["readOnlyRootFilesystem"] = True
        if security:
            container["securityContext"] = security
        if pod_security:
            pod["securityContext"] = pod_security
        if c.get("TTY"):
            container["tty"] = bool(c.pop("TTY"))
        if c.get("OpenStdin"):
            container["stdin"] = bool(c.pop("OpenStdin"))
        hostname = c.pop("Hostname", None)
        if hostname:
            if "{{" not in hostname and DNS1123_LABEL.match(hostname) and len(hostname) <= 63:
                pod["hostname"] = hostname
            else:
                self.skip("TaskTemplate.ContainerSpec.Hostname", hostname, "Swarm templates (and names that are not DNS labels) have no equivalent; pods are named by Kubernetes")
        grace = c.pop("StopGracePeriod", None)
        if grace:
            pod["terminationGracePeriodSeconds"] = _seconds(grace, 0)
        signal = c.pop("StopSignal", None)
        if signal:
            self.skip("TaskTemplate.ContainerSpec.StopSignal", signal, "Kubernetes always sends SIGTERM (set STOPSIGNAL in the image)")
        hosts = c.pop("Hosts", None) or []
        aliases = {}
        for entry in hosts:
            words = str(entry).split()
            if len(words) >= 2:
                aliases.setdefault(words[0], []).extend(words[1:])
            else:
                self.skip("TaskTemplate.ContainerSpec.Hosts", entry, "not an 'IP name' entry")
        if aliases:
            pod["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in aliases.items()]
        health = c.pop("Healthcheck", None)
        if health:
            self._probes(health, container)
        self._mounts(c.pop("Mounts", None) or [], container, pod)
        self._files(c.pop("Secrets", None) or [], "Secret", "/run/secrets", container, pod)
        self._files(c.pop("Configs", None) or [], "ConfigMap", "/", container, pod)
        privileges = c.pop("Privileges", None) or {}
        for key, value in privileges.items():
            if value not in (None, {}, [], False):
                self.skip(f"TaskTemplate.ContainerSpec.Privileges.{key}", value, "set the pod's securityContext by hand")
        defaults = {"Isolation": "default", "Init": False, "DNSConfig": {}}
        for key, value in c.items():
            if value in (None, {}, [], "") or defaults.get(key, object()) == value:
                continue
            self.skip(f"TaskTemplate.ContainerSpec.{key}", value, "no Kubernetes equivalent in this translation")
        return pod, container

    def _probes(self, health, container):
        test = list(health.get("Test") or [])
        if not test or test[0] == "NONE":
            if test:
                self.skip("TaskTemplate.ContainerSpec.Healthcheck", test, "the image's healthcheck is turned off; Kubernetes ignores image healthchecks anyway")
            return
        if test[0] == "CMD":
            command = test[1:]
        elif test[0] == "CMD-SHELL":
            command = ["/bin/sh", "-c", " ".join(test[1:])]
        else:
            self.skip("TaskTemplate.ContainerSpec.Healthcheck.Test", test, "not a CMD or CMD-SHELL test")
            return
        if not command:
            return
        interval = _seconds(health.get("Interval")) if health.get("Interval") else HEALTH_INTERVAL
        timeout = _seconds(health.get("Timeout")) if health.get("Timeout") else HEALTH_TIMEOUT
        probe = {"exec": {"command": command}, "periodSeconds": interval, "timeoutSeconds": timeout,
                 "failureThreshold": health.get("Retries") or HEALTH_RETRIES}
        if health.get("StartPeriod"):
            probe["initialDelaySeconds"] = _seconds(health["StartPeriod"], 0)
        if health.get("StartInterval"):
            self.skip("TaskTemplate.ContainerSpec.Healthcheck.StartInterval", _duration(health["StartInterval"]),
                      "Kubernetes probes keep one period; a startupProbe could be added by hand")
        container["livenessProbe"] = probe
        container["readinessProbe"] = dict(probe)

    def _mounts(self, mounts, container, pod):
        for i, mount in enumerate(mounts):
            kind, target = mount.get("Type") or "volume", mount.get("Target")
            volume_name = f"mount-{i}"
            if kind == "tmpfs":
                volume = {"name": volume_name, "emptyDir": {"medium": "Memory"}}
                size = (mount.get("TmpfsOptions") or {}).get("SizeBytes")
                if size:
                    volume["emptyDir"]["sizeLimit"] = _quantity_bytes(size)
            elif kind == "volume" and mount.get("Source"):
                claim = _object_name(mount["Source"], self.stack)
                volume = {"name": volume_name, "persistentVolumeClaim": {"claimName": claim}}
                self.need("PersistentVolumeClaim", claim, mount["Source"])
                driver = (mount.get("VolumeOptions") or {}).get("DriverConfig")
                if driver:
                    self.skip(f"TaskTemplate.ContainerSpec.Mounts[{i}].VolumeOptions.DriverConfig", driver,
                              "volume drivers map to storage classes: choose one when creating the claim")
            elif kind == "volume":
                volume = {"name": volume_name, "emptyDir": {}}
            else:
                self.skip(f"TaskTemplate.ContainerSpec.Mounts[{i}]", {"Type": kind, "Source": mount.get("Source"), "Target": target},
                          "host paths and other mount types differ between nodes; use a PersistentVolume")
                continue
            volume_mount = {"name": volume_name, "mountPath": target}
            if mount.get("ReadOnly"):
                volume_mount["readOnly"] = True
            pod.setdefault("volumes", []).append(volume)
            container.setdefault("volumeMounts", []).append(volume_mount)

    def _files(self, refs, kind, base, container, pod):
        """Docker secrets and configs: a volume of the Secret/ConfigMap the user creates with the
        same name, its one key mounted at the file's path."""
        setting = "Secrets" if kind == "Secret" else "Configs"
        for i, ref in enumerate(refs):
            swarm_name = ref.get("SecretName") or ref.get("ConfigName") or ""
            if not ref.get("File"):
                self.skip(f"TaskTemplate.ContainerSpec.{setting}[{i}]", swarm_name, "only file targets can be mounted (runtime targets have no equivalent)")
                continue
            name = _object_name(swarm_name, self.stack)
            file = ref["File"]
            path = file.get("Name") or swarm_name
            if not path.startswith("/"):
                path = f"{base.rstrip('/')}/{path}"
            key = kube_name(path.rsplit("/", 1)[-1]) if not re.fullmatch(r"[-._a-zA-Z0-9]+", path.rsplit("/", 1)[-1]) else path.rsplit("/", 1)[-1]
            volume_name = f"{'secret' if kind == 'Secret' else 'config'}-{i}"
            source = {"secretName": name} if kind == "Secret" else {"name": name}
            item = {"key": key, "path": key}
            if file.get("Mode") is not None:
                item["mode"] = int(file["Mode"])
            source["items"] = [item]
            pod.setdefault("volumes", []).append({"name": volume_name, ("secret" if kind == "Secret" else "configMap"): source})
            container.setdefault("volumeMounts", []).append({"name": volume_name, "mountPath": path, "subPath": key, "readOnly": True})
            self.need(kind, name, swarm_name, [key])
            if str(file.get("UID") or "0") != "0" or str(file.get("GID") or "0") != "0":
                self.skip(f"TaskTemplate.ContainerSpec.{setting}[{i}].File", {"UID": file.get("UID"), "GID": file.get("GID")},
                          "Kubernetes mounts files as root; use the pod's fsGroup for group access")

    def _placement(self, placement, pod):
        expressions = []
        for constraint in placement.get("Constraints") or []:
            expression = self._constraint(constraint)
            if expression is not None:
                expressions.append(expression)
        if expressions:
            pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]}}}
        spreads = []
        for preference in placement.get("Preferences") or []:
            descriptor = (preference.get("Spread") or {}).get("SpreadDescriptor", "")
            if descriptor.startswith("node.labels."):
                spreads.append({"maxSkew": 1, "topologyKey": descriptor[len("node.labels."):], "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": {NAME_LABEL: self.name}}})
            else:
                self.skip("TaskTemplate.Placement.Preferences", preference, "only spreading over node labels maps (topologySpreadConstraints)")
        if spreads:
            pod["topologySpreadConstraints"] = spreads
        most = placement.get("MaxReplicas")
        if most == 1:
            pod.setdefault("affinity", {})["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {NAME_LABEL: self.name}}, "topologyKey": "kubernetes.io/hostname"}]}
        elif most:
            self.skip("TaskTemplate.Placement.MaxReplicas", most,
                      "Kubernetes limits pods per node only to one (pod anti-affinity); a topology spread constraint is the nearest")
        if placement.get("Platforms"):
            self.skip("TaskTemplate.Placement.Platforms", placement["Platforms"],
                      "Kubernetes picks the image's platform from its index on each node; add a kubernetes.io/arch affinity if needed")

    def _constraint(self, text):
        match = CONSTRAINT.match(str(text))
        if not match:
            self.skip("TaskTemplate.Placement.Constraints", text, "not a 'key==value' or 'key!=value' constraint")
            return None
        key, op, value = match.groups()
        operator = "In" if op == "==" else "NotIn"
        if key.startswith("node.labels.") and len(key) > len("node.labels."):
            return {"key": key[len("node.labels."):], "operator": operator, "values": [value]}
        if key == "node.hostname":
            return {"key": "kubernetes.io/hostname", "operator": operator, "values": [value]}
        if key == "node.platform.os":
            return {"key": "kubernetes.io/os", "operator": operator, "values": [value.lower()]}
        if key == "node.platform.arch" and value.lower() in ARCH:
            return {"key": "kubernetes.io/arch", "operator": operator, "values": [ARCH[value.lower()]]}
        if key == "node.role" and value in ("manager", "worker"):
            on_managers = (value == "manager") == (op == "==")
            return {"key": CONTROL_PLANE, "operator": "Exists" if on_managers else "DoesNotExist"}
        reasons = {
            "node.id": "Kubernetes nodes have no Swarm node ids; use node.hostname or a node label",
            "node.role": "roles are manager or worker",
            "node.platform.arch": "unknown architecture",
        }
        reason = reasons.get(key) or ("engine labels are not node labels in Kubernetes; label the nodes and use node.labels"
                                      if key.startswith("engine.labels.") else "no Kubernetes node field for it")
        self.skip("TaskTemplate.Placement.Constraints", text, reason)
        return None

    def _resources(self, resources, container):
        out = {}
        for swarm, kube in (("Reservations", "requests"), ("Limits", "limits")):
            given = dict(resources.get(swarm) or {})
            amounts = {}
            if given.pop("NanoCPUs", None):
                amounts["cpu"] = _quantity_cpu(resources[swarm]["NanoCPUs"])
            if given.pop("MemoryBytes", None):
                amounts["memory"] = _quantity_bytes(resources[swarm]["MemoryBytes"])
            for key, value in given.items():
                if value not in (None, 0, [], {}):
                    self.skip(f"TaskTemplate.Resources.{swarm}.{key}", value,
                              "no Kubernetes container resource for it (process limits and generic resources are per node there)")
            if amounts:
                out[kube] = amounts
        if out:
            container["resources"] = out

    def _networks(self, networks):
        for network in networks:
            target = network.get("Target")
            self.skip("TaskTemplate.Networks", self.networks.get(target, target),
                      "Kubernetes pods share one network: every pod can reach this service by its Service name; isolate with NetworkPolicies")
            extra = [alias for alias in network.get("Aliases") or [] if kube_name(alias) != self.name]
            if extra:
                self.skip("TaskTemplate.Networks.Aliases", extra, "a Service has one name; make another Service for each alias")

    def _workload(self, mode, meta, selector, template, update, restart):
        pod = template["spec"]
        condition = restart.get("Condition") or "any"
        job = "ReplicatedJob" in mode or "GlobalJob" in mode
        if job:
            pod["restartPolicy"] = "OnFailure" if condition == "on-failure" else "Never"
            if condition == "any":
                self.skip("TaskTemplate.RestartPolicy.Condition", condition, "a Job restarts only failed pods (OnFailure)")
        elif condition != "any":
            self.skip("TaskTemplate.RestartPolicy.Condition", condition,
                      "pods of a Deployment or DaemonSet always restart (restartPolicy Always)")
        if restart.get("Delay") and restart["Delay"] != 5 * SECOND:
            self.skip("TaskTemplate.RestartPolicy.Delay", _duration(restart["Delay"]), "Kubernetes restarts with its own back-off")
        if restart.get("Window"):
            self.skip("TaskTemplate.RestartPolicy.Window", _duration(restart["Window"]), "Kubernetes has no restart window")
        if restart.get("MaxAttempts") and not job:
            self.skip("TaskTemplate.RestartPolicy.MaxAttempts", restart["MaxAttempts"], "a Deployment or DaemonSet restarts without limit")

        if "Replicated" in mode or "Global" in mode:
            kind = "Deployment" if "Replicated" in mode else "DaemonSet"
            spec = {"replicas": (mode["Replicated"] or {}).get("Replicas", 1)} if kind == "Deployment" else {}
            strategy = self._strategy(update, kind)
            if strategy:
                spec["strategy" if kind == "Deployment" else "updateStrategy"] = strategy
            spec.update({"selector": {"matchLabels": selector}, "template": template})
            return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
        if "ReplicatedJob" in mode:
            job_mode = mode["ReplicatedJob"] or {}
            spec = {"completions": job_mode.get("TotalCompletions", 1), "parallelism": job_mode.get("MaxConcurrent", 1), "template": template}
            if restart.get("MaxAttempts"):
                spec["backoffLimit"] = restart["MaxAttempts"]
            if update:
                self.skip("UpdateConfig", update, "a Job is not updated in place")
            return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}
        self.skip("Mode", mode, "a job on every node has no Kubernetes equivalent (a DaemonSet's pods never complete)")
        return None

    def _strategy(self, update, kind):
        if not update:
            return None
        update = dict(update)
        parallelism = update.pop("Parallelism", 1)
        order = update.pop("Order", "stop-first")
        step = parallelism if parallelism else "100%"
        if order == "start-first":
            rolling = {"maxSurge": step, "maxUnavailable": 0}
        else:
            rolling = {"maxSurge": 0, "maxUnavailable": step}
        delay = update.pop("Delay", 0)
        if delay:
            self.skip("UpdateConfig.Delay", _duration(delay),
                      "Kubernetes does not wait between batches (minReadySeconds, which waits for each new pod to stay ready, is the nearest)")
        action = update.pop("FailureAction", "pause")
        if action not in ("pause", ""):
            self.skip("UpdateConfig.FailureAction", action,
                      "a failed rollout stops (as Swarm's pause); roll back with `kubectl rollout undo`")
        monitor = update.pop("Monitor", 0)
        if monitor and monitor != 5 * SECOND:
            self.skip("UpdateConfig.Monitor", _duration(monitor), "Kubernetes judges a new pod by its readiness probe")
        ratio = update.pop("MaxFailureRatio", 0)
        if ratio:
            self.skip("UpdateConfig.MaxFailureRatio", ratio, "Kubernetes stops a rollout at the first pod that does not become ready")
        for key, value in update.items():
            if value not in (None, 0, ""):
                self.skip(f"UpdateConfig.{key}", value, "no Kubernetes equivalent in this translation")
        return {"type": "RollingUpdate", "rollingUpdate": rolling}

    def _ports(self, endpoint, container, selector, meta, has_workload):
        ports, published = [], []
        for i, port in enumerate(endpoint.get("Ports") or []):
            protocol = str(port.get("Protocol") or "tcp").upper()
            target = port.get("TargetPort")
            if not target:
                self.skip(f"EndpointSpec.Ports[{i}]", port, "no target port")
                continue
            container_port = {"containerPort": target, "protocol": protocol}
            if port.get("PublishMode") == "host":
                if port.get("PublishedPort"):
                    container_port["hostPort"] = port["PublishedPort"]
                container.setdefault("ports", []).append(container_port)
                continue
            if container_port not in container.get("ports", []):
                container.setdefault("ports", []).append(container_port)
            number = port.get("PublishedPort") or target
            ports.append({"name": f"{protocol.lower()}-{number}", "port": number, "targetPort": target, "protocol": protocol})
            if port.get("PublishedPort"):
                published.append(f"{port['PublishedPort']}/{protocol.lower()}")
        if published:
            self.skip("EndpointSpec.Ports.PublishedPort", published,
                      "Swarm publishes these on every node (the routing mesh); the Service is ClusterIP on the same port numbers: "
                      "reach it from outside with a NodePort or LoadBalancer Service or an Ingress")
        if not has_workload:
            return None
        headless = endpoint.get("Mode") == "dnsrr" or not ports
        service_spec = {"selector": dict(selector)}
        if headless:
            service_spec["clusterIP"] = "None"
        if ports:
            service_spec["ports"] = ports
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": self.name, "labels": {NAME_LABEL: self.name, MIGRATED_LABEL: "swarm"},
                             "annotations": {"corral.io/swarm-service": self.swarm_name}},
                "spec": service_spec}


def translate_service(spec, out: Translation | None = None, stack=None, networks=None) -> Translation:
    """Translate one engine service spec (``attrs["Spec"]``).  ``networks`` maps network ids to
    names, for the list of what was left out."""
    if not isinstance(spec, dict) or not spec.get("Name"):
        raise ValueError("not a Docker service spec (it has no Name)")
    out = out if out is not None else Translation()
    _Service(spec, out, stack=stack, networks=networks).translate()
    return out


def translate_stack(specs, networks=None) -> Translation:
    """Translate several service specs into one set of objects (a stack: names without the stack
    prefix, so the services find each other by the names they used on the stack's network)."""
    out = Translation()
    seen = {}
    for spec in sorted(specs, key=lambda s: s.get("Name") or ""):
        translate_service(spec, out, networks=networks)
        name = out.names.get(spec.get("Name"))
        if name in seen:
            raise ValueError(f"services {seen[name]} and {spec['Name']} would both be named {name} in Kubernetes")
        seen[name] = spec.get("Name")
    return out


def with_namespace(objects, namespace):
    """Copies of ``objects`` placed in ``namespace``."""
    return [{**obj, "metadata": {**obj["metadata"], "namespace": namespace}} for obj in objects]
