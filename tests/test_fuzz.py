"""Schema fuzzing: schemathesis generates requests from `/api/schema/` (documented examples, boundary
and negative values, random data, and stateful sequences that use what one call returns in the next)
against a live server on the real PostgreSQL, as an administrator and as a tenant with data.

It asserts no server error, no response outside the documented schema, no undocumented status code
and no invalid input accepted.  FUZZ_MAX_EXAMPLES / FUZZ_SEED tune a run (`make test` uses the defaults).
"""

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.utils import timezone

from clusters.models import ClusterEvent, Node, Pod, Service, Workload
from monitoring.models import Alert, AlertRule, Notifier
from portal.models import Operation
from tests.conftest import World

pytestmark = pytest.mark.fuzz

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
# Operations that would reach outside the test: an import or new credentials connect to whatever
# server the generated body names (a random host name waits for DNS and the connect timeout).
# Their validation is covered in tests/test_import.py against real API servers.
EXCLUDED_PATHS = r"^/api/v1/clusters/(import/|\{id\}/credentials/)$"
# Revoking a token it found in GET /tokens/ would end the run: every later request would be a 401.
# Revocation is covered in tests/test_portal_api.py.
EXCLUDED_OPERATIONS = "v1_tokens_destroy"


@pytest.fixture
def fuzz_world(transactional_db):
    from portal.celery import app

    world = World()
    # Every operation that touches a cluster meets one that answers at once: the clusters are rows
    # without an API server address, so changes are refused (400) before any connection.
    now = timezone.now()
    cluster, ns = world.cluster, world.namespace
    node = Node.objects.create(cluster=cluster, uid="n1", name="node-1", ready=True, capacity={"cpu": "4"})
    workload = Workload.objects.create(cluster=cluster, namespace=ns, uid="w1", name="web", kind="deployment",
                                       desired_replicas=2, ready_replicas=2, images=["nginx:1.27"], selector={"app": "web"})
    Pod.objects.create(cluster=cluster, namespace=ns, uid="p1", name="web-1", node=node, node_name="node-1",
                       workload=workload, phase="Running", ready=True, images=["nginx:1.27"], started=now)
    Service.objects.create(cluster=cluster, namespace=ns, uid="s1", name="web", type="ClusterIP", ports=[{"port": 80}])
    ClusterEvent.objects.create(cluster=cluster, uid="e1", name="web-1.1", type="Warning", reason="BackOff", message="back-off")
    ClusterEvent.objects.create(cluster=cluster, namespace=ns, uid="e2", name="web-1.2", type="Warning", reason="Failed")
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": "https://hooks.example.com/x"})
    rule = AlertRule.objects.create(name="nodes", cluster=cluster, condition="node-not-ready", severity="warning")
    rule.notifiers.add(notifier)
    Alert.objects.create(rule=rule, cluster=cluster, target="node/node-1", message="not ready")
    Operation.objects.create(kind="sync", cluster=cluster, created_by=world.owner)
    Operation.objects.create(kind="sync", cluster=cluster)  # started by the system: no user
    # Tasks queue on the private Redis where no worker runs: nothing provisions or removes a
    # sandbox because a generated request asked for it.
    app.conf.task_always_eager = False
    yield world
    app.conf.task_always_eager = True
    app.control.purge()


def _command(url, schema, token, report, max_examples, seed):
    return [
        sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", url,
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS),
        "--mode", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        "--workers", "1",  # one thread each: CPython 3.11's ast.parse is not thread-safe (hypothesis calls it)
        "--request-timeout", "20",
        "--exclude-path-regex", EXCLUDED_PATHS,
        "--exclude-operation-id", EXCLUDED_OPERATIONS,
        "--suppress-health-check", "all",
        "--report", "ndjson", "--report-ndjson-path", str(report),
        "--no-color",
    ]


def _requests(report):
    """How many requests a run made, from its event stream."""
    count = 0
    for line in Path(report).read_text().splitlines():
        event = json.loads(line)
        if "ScenarioFinished" in event:
            count += len(event["ScenarioFinished"]["recorder"].get("interactions", {}))
    return count


def test_schema_fuzzing_finds_nothing(fuzz_world, live_server, tmp_path):
    from portal.models import ApiToken

    max_examples = int(os.environ.get("FUZZ_MAX_EXAMPLES", "15"))
    seed = int(os.environ.get("FUZZ_SEED", "20261122"))
    started, cpu_before = time.monotonic(), _cpu_seconds()
    # The schema is read once: both runs test against the same document.
    schema = tmp_path / "schema.json"
    with urllib.request.urlopen(f"{live_server.url}/api/schema/?format=json", timeout=60) as response:
        schema.write_bytes(response.read())
    runs = {}
    for user in (fuzz_world.admin, fuzz_world.owner):  # an administrator and a tenant, side by side
        _, token = ApiToken.issue(user)
        report = tmp_path / f"{user.username}.ndjson"
        process = subprocess.Popen(_command(live_server.url, schema, token, report, max_examples, seed), cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs[user.username] = (process, report)
    total, failures = 0, []
    for username, (process, report) in runs.items():
        output, _ = process.communicate(timeout=1200)
        requests = _requests(report)
        total += requests
        print(f"schemathesis as {username}: {requests} requests, exit {process.returncode}")
        if process.returncode != 0:
            failures.append(f"--- as {username} ---\n{output[-30000:]}")
    print(f"schema fuzzing: {total} requests in {time.monotonic() - started:.0f} s wall, "
          f"{_cpu_seconds() - cpu_before:.0f} s CPU (server and schemathesis)")
    assert not failures, "\n".join(failures)
    assert total >= 5000


def _cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
