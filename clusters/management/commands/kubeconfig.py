"""Print a kubeconfig for kubectl through Corral's proxy, for a user: every cluster they may see,
or one.  Each run makes a new token of kind ``kubeconfig`` (listed and revocable on the tokens page)."""

import yaml
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from clusters import kubeconfig
from clusters.models import Cluster


class Command(BaseCommand):
    help = "Print a kubeconfig (YAML) pointing kubectl at Corral's Kubernetes API proxy."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--cluster", type=int, help="only this cluster (id)")
        parser.add_argument("--days", type=int, help="lifetime of the token (default PORTAL_KUBECONFIG_TOKEN_DAYS)")
        parser.add_argument("--server", help="Corral's URL as kubectl reaches it (default PORTAL_EXTERNAL_URL or http://127.0.0.1:8000)")

    def handle(self, username, cluster=None, days=None, server=None, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        clusters = Cluster.objects.restrict(user, "view").order_by("name", "pk")
        if cluster is not None:
            clusters = clusters.filter(pk=cluster)
            if not clusters.exists():
                raise CommandError(f"{username} may not see a cluster with id {cluster}")
        try:
            config, _ = kubeconfig.issue(user, clusters, (server or kubeconfig.server_base()).rstrip("/"), days=days)
        except ValidationError as exc:
            raise CommandError("; ".join(m for ms in exc.message_dict.values() for m in ms)) from None
        self.stdout.write(yaml.safe_dump(config, sort_keys=False), ending="")
