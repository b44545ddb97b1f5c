"""Provisioning drivers.  ``imported`` clusters exist already and are never touched; ``sandbox``
clusters are local upstream control planes with kwok nodes (see docs/sandbox.md)."""

from django.conf import settings


class DriverError(Exception):
    pass


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
        from clusters.sandbox import Sandbox

        return Sandbox(f"cluster-{cluster.slug}", root=settings.SANDBOX_ROOT)

    def provision(self, cluster, progress):
        """Start the sandbox; returns (endpoint, credentials)."""
        from clusters.sandbox import SandboxError

        nodes = int(cluster.driver_config.get("nodes", 3))
        if not 1 <= nodes <= 5000:
            raise DriverError("a sandbox has between 1 and 5000 nodes")
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


DRIVERS = {"imported": ImportedDriver(), "sandbox": SandboxDriver()}


def driver_for(cluster):
    return DRIVERS[cluster.driver]
