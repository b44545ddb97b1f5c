"""manage.py sandbox up|down|list|kubeconfig: real Kubernetes control planes with kwok nodes."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from clusters.sandbox import Sandbox, SandboxError


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


class Command(BaseCommand):
    help = "Start, stop and list local Kubernetes sandboxes (upstream control plane + kwok nodes)."

    def add_arguments(self, parser):
        parser.add_argument("--root", type=Path, help="state directory (default: $CORRAL_SANDBOX_ROOT, else sandboxes/ under $CORRAL_VAR_DIR or var/)")
        sub = parser.add_subparsers(dest="action", required=True, metavar="{up,down,list,kubeconfig}")
        up = sub.add_parser("up", help="start a sandbox and wait until its nodes are Ready")
        up.add_argument("name")
        up.add_argument("--nodes", type=int, default=3, help="simulated nodes (default 3)")
        up.add_argument("--port", type=int, help="kube-apiserver port (default: a free one)")
        up.add_argument("--capi", action="store_true",
                        help="also run Cluster API (in-memory machines) and apply the ClusterClass in-memory: a management cluster")
        down = sub.add_parser("down", help="stop a sandbox and remove its state")
        down.add_argument("name")
        sub.add_parser("list", help="list sandboxes")
        kubeconfig = sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
        kubeconfig.add_argument("name")

    def handle(self, *args, action, root=None, **options):
        from django.conf import settings

        root = root or settings.SANDBOX_ROOT  # the portal's own sandboxes: CORRAL_SANDBOX_ROOT / CORRAL_VAR_DIR
        try:
            getattr(self, f"_{action}")(root, **options)
        except SandboxError as exc:
            raise CommandError(str(exc)) from exc

    def _up(self, root, name, nodes, port=None, capi=False, **_):
        sandbox = Sandbox(name, root)

        def progress(percent, message):
            self.stdout.write(f"[{percent:3d}%] {message}")

        sandbox.up(nodes=nodes, progress=progress, api_port=port, capi=capi)
        self.stdout.write(self.style.SUCCESS(f"sandbox {name} is up: {sandbox.endpoint}"))
        if capi:
            self.stdout.write("Cluster API runs beside it; ClusterClass default/in-memory (see docs/capi.md)")
        self.stdout.write(f"export KUBECONFIG={sandbox.kubeconfig_path}")

    def _down(self, root, name, **_):
        Sandbox(name, root).down()
        self.stdout.write(self.style.SUCCESS(f"sandbox {name} stopped and removed"))

    def _list(self, root, **_):
        sandboxes = Sandbox.list(root)
        if not sandboxes:
            self.stdout.write("no sandboxes")
            return
        self.stdout.write(f"{'NAME':<24} {'STATE':<10} {'NODES':>5} {'MEMORY':>10}  ENDPOINT")
        for sandbox in sandboxes:
            status = sandbox.status()
            state = "running" if status.get("healthy") else ("degraded" if status["running"] else "stopped")
            self.stdout.write(
                f"{sandbox.name:<24} {state:<10} {status.get('nodes', 0):>5} "
                f"{_mib(status.get('rss_bytes', 0)):>10}  {status.get('endpoint', '')}"
            )

    def _kubeconfig(self, root, name, **_):
        sandbox = Sandbox(name, root)
        if not sandbox.is_running():
            raise CommandError(f"sandbox {name!r} is not running")
        self.stdout.write(str(sandbox.kubeconfig_path))
