"""Provisioning drivers.  ``imported`` clusters exist already and are never touched; ``sandbox``
clusters are local upstream control planes with kwok nodes (see docs/sandbox.md)."""

from django.conf import settings


class DriverError(Exception):
    pass


def sandbox_nodes_error(driver_config):
    """Why a sandbox's ``driver_config`` is refused (None when it is fine)."""
    cap = settings.SANDBOX_MAX_NODES
    nodes = (driver_config or {}).get("nodes", 3) if isinstance(driver_config, dict) else None
    if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= cap:
        return f"nodes must be a whole number from 1 to {cap} (PORTAL_SANDBOX_MAX_NODES)"
    return None


def refuse_new_cluster(user, driver):
    """Why ``user`` may not add a cluster with ``driver`` (None when they may).  Importing and
    provisioning need the global permission "Create clusters"; a sandbox runs on Corral's own host,
    so it needs "Use the sandbox driver" too.  Administrators have both."""
    from clusters.models import Cluster, ClusterDriver
    from clusters.permissions import USE_SANDBOX
    from portal.permissions import can_add, has_global_permission

    if not can_add(user, Cluster):
        return "adding clusters needs the global permission “Create clusters”; ask an administrator"
    if driver == ClusterDriver.SANDBOX and not has_global_permission(user, USE_SANDBOX):
        return "the sandbox driver needs the global permission “Use the sandbox driver”; ask an administrator"
    return None


class ImportedDriver:
    provisions = False

    def provision(self, cluster, progress):
        raise DriverError("imported clusters are registered, not provisioned")

    def teardown(self, cluster, progress):
        # Removing an imported cluster forgets it in Corral; nothing in the cluster changes.
        progress(50, "forgetting the cluster's inventory (the cluster itself is not changed)")



class SandboxDriver:
    provisions = True

    def _sandbox(self, cluster):
        from clusters.sandbox import Sandbox, sandbox_name

        # A slug holds up to 63 characters; with the prefix, a long one is cut to fit (with a hash).
        return Sandbox(sandbox_name(f"cluster-{cluster.slug}"), root=settings.SANDBOX_ROOT)

    def provision(self, cluster, progress):
        """Start the sandbox; returns (endpoint, credentials)."""
        from clusters.sandbox import SandboxError

        problem = sandbox_nodes_error(cluster.driver_config)
        if problem:
            raise DriverError(problem)
        nodes = cluster.driver_config.get("nodes", 3)
        sandbox = self._sandbox(cluster)
        try:
            sandbox.up(nodes=nodes, progress=lambda pct, msg: progress(5 + int(pct * 0.85), msg))
            progress(92, "creating the corral-admin service account and its token")
            token = sandbox.admin_token()
        except SandboxError as exc:
            raise DriverError(str(exc)) from exc
        return sandbox.endpoint, {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": token}

    def teardown(self, cluster, progress):
        sandbox = self._sandbox(cluster)
        if sandbox.is_running():
            progress(30, "stopping the sandbox's control plane and nodes")
            sandbox.down()
        else:
            progress(30, "the sandbox was not running")


def _capi():
    from clusters.capi.driver import CapiDriver

    return CapiDriver()


DRIVERS = {"imported": ImportedDriver(), "sandbox": SandboxDriver(), "capi": _capi()}


def driver_for(cluster):
    return DRIVERS[cluster.driver]
