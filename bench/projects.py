"""Projects at scale: how many RoleBindings Corral creates, and how long reconciling takes.

    python bench/projects.py

One sandbox cluster; 50 users in 10 groups; 20 projects of 5 namespaces each, every project with
a pool, a namespace default and container defaults; per project an owner (user), two members
(users), a member group and a read-only group; one cluster owner and a cluster-member group.
Figures: the RoleBindings (and other objects) Corral creates against Rancher's published minimum
estimate of RoleBindings, 32C + U + 2*Ua*C + 8P + 5*Pa (C clusters, U users, Ua admin users, P
projects, Pa project role assignments); the time to reconcile everything from scratch, a pass
with nothing to do, and a pass after one membership change.  Needs `make kube-tools`; uses a
throwaway PostgreSQL database.
"""

import argparse
import tempfile
import time
from pathlib import Path

import benchdb


def build(cluster, users, groups, projects, namespaces_per_project):
    from django.contrib.auth.models import Group, User

    from clusters.models import ClusterMembership, Namespace
    from projects.models import Project, ProjectMembership

    people = [User.objects.create_user(f"user-{i:02d}") for i in range(users)]
    teams = [Group.objects.create(name=f"team-{i:02d}") for i in range(groups)]
    for i, person in enumerate(people):
        person.groups.add(teams[i % groups])
    ClusterMembership.objects.create(cluster=cluster, user=people[0], role="cluster-owner")
    ClusterMembership.objects.create(cluster=cluster, group=teams[0], role="cluster-member")
    made = []
    for p in range(projects):
        project = Project.objects.create(
            cluster=cluster, name=f"project-{p:02d}",
            resource_quota={"limits.cpu": "20", "limits.memory": "40Gi", "pods": "100"},
            namespace_default_quota={"limits.cpu": "4", "limits.memory": "8Gi", "pods": "20"},
            container_default_limits={"limits.cpu": "500m", "limits.memory": "256Mi", "requests.cpu": "100m", "requests.memory": "128Mi"},
        )
        for n in range(namespaces_per_project):
            Namespace.objects.create(cluster=cluster, name=f"p{p:02d}-ns{n}", uid="", project=project)
        ProjectMembership.objects.create(project=project, user=people[(p * 3) % users], role="project-owner")
        ProjectMembership.objects.create(project=project, user=people[(p * 3 + 1) % users], role="project-member")
        ProjectMembership.objects.create(project=project, user=people[(p * 3 + 2) % users], role="project-member")
        ProjectMembership.objects.create(project=project, group=teams[p % groups], role="project-member")
        ProjectMembership.objects.create(project=project, group=teams[(p + 1) % groups], role="read-only")
        made.append(project)
    return people, teams, made


def count_managed(sandbox):
    import json

    from projects import desired

    counts = {}
    for kind in ("namespaces", "rolebindings", "resourcequotas", "limitranges", "clusterrolebindings", "clusterroles"):
        out = sandbox.kubectl("get", kind, "-A", "-l", desired.SELECTOR, "-o", "json").stdout
        counts[kind] = len(json.loads(out)["items"])
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--namespaces", type=int, default=5, help="per project")
    args = parser.parse_args()

    benchdb.setup("corral_bench_projects")
    import projects.tasks
    from clusters.models import Cluster
    from clusters.sandbox import Sandbox
    from projects import reconciler
    from projects.models import ProjectMembership

    projects.tasks.request_reconcile = lambda cluster_id: None  # the bench reconciles by hand, timed

    with tempfile.TemporaryDirectory(prefix="corral-bench-projects-") as tmp:
        sandbox = Sandbox("bench-projects", Path(tmp))
        print("starting a sandbox ...", flush=True)
        sandbox.up(nodes=1, timeout=600)
        try:
            creds = {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
            cluster = Cluster.objects.create(name="bench", driver="imported", state="active", credentials=creds)
            people, teams, made = build(cluster, args.users, args.groups, args.projects, args.namespaces)
            assignments = ProjectMembership.objects.filter(project__cluster=cluster).count()

            def timed(label):
                started = time.perf_counter()
                result = reconciler.reconcile(cluster.pk)
                seconds = time.perf_counter() - started
                if result.errors:
                    raise SystemExit(f"{label}: errors {result.errors}")
                print(f"  {label:<40} {seconds:6.2f} s  ({len(result.created)} created, {len(result.updated)} updated, "
                      f"{len(result.deleted)} deleted)", flush=True)
                return result

            print(f"{args.users} users in {args.groups} groups, {args.projects} projects x {args.namespaces} namespaces, "
                  f"{assignments} project role assignments")
            timed("reconcile from scratch")
            timed("reconcile, nothing to do")
            ProjectMembership.objects.create(project=made[0], user=people[-1], role="read-only")
            timed("reconcile after one membership add")
            ProjectMembership.objects.filter(project=made[0], user=people[-1]).delete()
            timed("reconcile after one membership removal")

            counts = count_managed(sandbox)
            c, u, ua, p, pa = 1, args.users, 1, args.projects, assignments
            rancher = 32 * c + u + 2 * ua * c + 8 * p + 5 * pa
            print("objects Corral manages in the cluster: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
            print(f"RoleBindings: Corral {counts['rolebindings']} (+{counts['clusterrolebindings']} ClusterRoleBindings); "
                  f"Rancher's minimum estimate 32C + U + 2*Ua*C + 8P + 5*Pa = 32*{c} + {u} + 2*{ua}*{c} + 8*{p} + 5*{pa} = {rancher}")
        finally:
            sandbox.down()


if __name__ == "__main__":
    main()
