"""Two requests that change one project's pool or its allocation, run truly at the same time:
exactly one wins, the loser gets the usual 400, and the pool is never overdrawn.

Each request runs in its own thread with its own database connection and API client; a Barrier
starts them together.  Whichever passes its quota check first keeps its transaction open until
PostgreSQL reports the other one waiting on it (``pg_blocking_pids``) — or until the other has
passed its own check too, which is the bug: both then commit."""

import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from clusters.models import Namespace
from projects import quotas
from projects.quantities import parse_quantity

pytestmark = pytest.mark.django_db(transaction=True)

POOL = {"limits.cpu": "4", "limits.memory": "4Gi", "pods": "20"}
SHARE = {"limits.cpu": "1", "limits.memory": "1Gi", "pods": "5"}
SHRUNK = {**POOL, "limits.cpu": "2"}
WAIT_SECONDS = 15


@pytest.fixture
def pooled(world):
    world.project.resource_quota = POOL
    world.project.namespace_default_quota = SHARE
    world.project.save()
    return world.project


def _backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


class Race:
    """Runs ``requests`` (name -> callable returning a response) together; see the module doc."""

    def __init__(self, monkeypatch):
        self.pids, self.passed, self.responses = {}, {}, {}
        self.first = None  # (name, how the hold ended: "blocked" | "passed" | "timeout")
        self._first_lock = threading.Lock()
        for name in ("check_project", "check_namespace"):
            monkeypatch.setattr(quotas, name, self._held(getattr(quotas, name)))

    def _held(self, check):
        def held(*args, **kwargs):
            result = check(*args, **kwargs)  # a refusal raises and is not held
            me = threading.current_thread().name
            if me not in self.passed:  # not one of the racing threads
                return result
            self.passed[me].set()
            with self._first_lock:
                first = self.first is None
                if first:
                    self.first = (me, None)
            if first:
                self.first = (me, self._hold(me))
            return result
        return held

    def _hold(self, me):
        other = next(name for name in self.passed if name != me)
        deadline = time.monotonic() + WAIT_SECONDS
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT %s = ANY(pg_blocking_pids(%s))", [self.pids[me], self.pids[other]])
                if cursor.fetchone()[0]:
                    return "blocked"
                if self.passed[other].wait(0.005):
                    return "passed"
        return "timeout"

    def run(self, ahead=None, **requests):
        """``ahead``: the request that must pass its check first (the other starts only then), so
        that each side is seen winning; None leaves it to the race."""
        self.ahead = ahead
        barrier = threading.Barrier(len(requests))
        self.passed = {name: threading.Event() for name in requests}

        def thread(name, request):
            try:
                self.pids[name] = _backend_pid()
                barrier.wait(timeout=WAIT_SECONDS)
                if ahead not in (None, name):
                    assert self.passed[ahead].wait(WAIT_SECONDS), f"{ahead} never passed its check"
                self.responses[name] = request()
            except Exception as exc:  # a deadlock or any 500 shows up in the assertions
                self.responses[name] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=thread, args=item, name=item[0]) for item in requests.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_SECONDS * 2)
        assert not any(t.is_alive() for t in threads), "a request hung"
        return self

    def status(self, name):
        response = self.responses[name]
        assert not isinstance(response, Exception), f"{name} raised {response!r}"
        return response.status_code

    def outcome(self, name):
        code, response = self.status(name), self.responses[name]
        if response.request["PATH_INFO"].startswith("/admin/"):  # saved: a redirect; refused: the form again
            return {302: "won", 200: "lost"}.get(code, code)
        return {200: "won", 201: "won", 400: "lost"}.get(code, code)

    def winner_and_loser(self):
        """(the winner's name, the loser's response)"""
        outcomes = {name: self.outcome(name) for name in self.responses}
        won = [name for name, outcome in outcomes.items() if outcome == "won"]
        lost = [name for name, outcome in outcomes.items() if outcome == "lost"]
        assert len(won) == 1 and len(lost) == 1, {n: (o, self.responses[n].content[:300]) for n, o in outcomes.items()}
        # The second request really waited on the first's lock, rather than merely running after it.
        assert self.first is not None and self.first[1] == "blocked", self.first
        assert self.ahead in (None, won[0])
        return won[0], self.responses[lost[0]]


def assert_pool_respected(project):
    project.refresh_from_db()
    namespaces = list(Namespace.objects.filter(project=project))
    allocated = quotas.sum_quotas(quotas.effective_quota(project, ns.resource_quota) for ns in namespaces)
    for key, pooled in project.resource_quota.items():
        assert allocated.get(key, 0) <= parse_quantity(pooled), (key, allocated, project.resource_quota)


def _create(client, project, name):
    return lambda: client.post(f"/api/v1/projects/{project.pk}/namespaces/", {"name": name}, format="json")


def _shrink(client, project):
    return lambda: client.patch(f"/api/v1/projects/{project.pk}/", {"resource_quota": SHRUNK}, format="json")


@pytest.mark.parametrize("ahead", [None, "shrink", "add"])
def test_a_pool_shrink_and_a_namespace_add_at_once_cannot_both_win(world, pooled, monkeypatch, ahead):
    Namespace.objects.create(cluster=world.cluster, uid="ns-2", name="second", project=pooled)  # 2 of 4 cpu
    race = Race(monkeypatch).run(
        ahead=ahead,
        shrink=_shrink(world.client(world.owner), pooled),
        add=_create(world.client(world.owner), pooled, "third"),
    )
    winner, loser = race.winner_and_loser()
    refusal = loser.json()
    pooled.refresh_from_db()
    if winner == "shrink":
        assert pooled.resource_quota == SHRUNK and not Namespace.objects.filter(name="third").exists()
        assert "limits.cpu: asks 1 but only 0 is left (pool 2, 2 allocated to other namespaces)" in refusal["resource_quota"][0]
    else:
        assert pooled.resource_quota == POOL and Namespace.objects.filter(name="third", project=pooled).exists()
        assert "limits.cpu: 3 is allocated to its namespaces, more than 2" in refusal["resource_quota"][0]
    assert_pool_respected(pooled)


@pytest.mark.parametrize("ahead", [None, "one", "two"])
def test_two_namespace_adds_for_the_last_share_cannot_both_win(world, pooled, monkeypatch, ahead):
    for name in ("second", "third"):  # 3 of 4 cpu
        Namespace.objects.create(cluster=world.cluster, uid=f"ns-{name}", name=name, project=pooled)
    race = Race(monkeypatch).run(
        ahead=ahead,
        one=_create(world.client(world.owner), pooled, "four-a"),
        two=_create(world.client(world.admin), pooled, "four-b"),
    )
    winner, loser = race.winner_and_loser()
    refusal = loser.json()
    assert set(Namespace.objects.filter(project=pooled, name__startswith="four-").values_list("name", flat=True)) == {
        "four-a" if winner == "one" else "four-b"
    }
    assert "limits.cpu: asks 1 but only 0 is left (pool 4, 4 allocated to other namespaces)" in refusal["resource_quota"][0]
    assert_pool_respected(pooled)


@pytest.mark.parametrize("ahead", [None, "move", "shrink"])
def test_a_namespace_move_in_and_a_pool_shrink_at_once_cannot_both_win(world, pooled, monkeypatch, ahead):
    Namespace.objects.create(cluster=world.cluster, uid="ns-2", name="second", project=pooled)  # 2 of 4 cpu
    loose = Namespace.objects.create(cluster=world.cluster, uid="ns-loose", name="loose")
    mover = world.client(world.owner)
    race = Race(monkeypatch).run(
        ahead=ahead,
        move=lambda: mover.patch(f"/api/v1/namespaces/{loose.pk}/", {"project": pooled.pk}, format="json"),
        shrink=_shrink(world.client(world.admin), pooled),
    )
    winner, loser = race.winner_and_loser()
    refusal = loser.json()
    pooled.refresh_from_db()
    loose.refresh_from_db()
    if winner == "shrink":
        assert pooled.resource_quota == SHRUNK and loose.project_id is None
        assert "limits.cpu: asks 1 but only 0 is left (pool 2, 2 allocated to other namespaces)" in refusal["project"][0]
    else:
        assert pooled.resource_quota == POOL and loose.project_id == pooled.pk
        assert "limits.cpu: 3 is allocated to its namespaces, more than 2" in refusal["resource_quota"][0]
    assert_pool_respected(pooled)



@pytest.mark.parametrize("ahead", [None, "shrink", "add"])
def test_a_pool_shrink_in_the_admin_and_a_namespace_add_at_once_cannot_both_win(world, pooled, monkeypatch, ahead):
    Namespace.objects.create(cluster=world.cluster, uid="ns-2", name="second", project=pooled)  # 2 of 4 cpu
    browser = Client()
    browser.force_login(world.admin)
    form = {
        "cluster": world.cluster.pk, "name": pooled.name, "description": "", "resource_quota": json.dumps(SHRUNK),
        "namespace_default_quota": json.dumps(SHARE), "container_default_limits": "{}",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    }
    race = Race(monkeypatch).run(
        ahead=ahead,
        shrink=lambda: browser.post(f"/admin/projects/project/{pooled.pk}/change/", form),
        add=_create(world.client(world.owner), pooled, "third"),
    )
    winner, loser = race.winner_and_loser()
    pooled.refresh_from_db()
    if winner == "shrink":
        assert pooled.resource_quota == SHRUNK and not Namespace.objects.filter(name="third").exists()
        assert "asks 1 but only 0 is left (pool 2, 2 allocated" in loser.json()["resource_quota"][0]
    else:
        assert pooled.resource_quota == POOL and Namespace.objects.filter(name="third", project=pooled).exists()
        assert "limits.cpu: 3 is allocated to its namespaces, more than 2" in loser.content.decode()
    assert_pool_respected(pooled)
