"""A Swarm's inventory at scale: N services of R replicas on a private swarm (tests/swarm_fixtures.py:
its own dockerd under var/, Debian's docker.io, the busybox test image), then

- the first sync's time (every node, service, task, network, secret and config read and written),
  and a resync with nothing changed;
- an event's delay: a service scaled with the docker CLI (`docker service scale --detach`), from the
  command returning to the service's row showing the new desired count in the database, and to a
  websocket subscribed to the cluster receiving it (the real consumer over the Redis channel layer,
  in process), through the watcher's SwarmWatch (the engine's event stream).  p50 / p95 over
  ``--trials`` scales (target: p95 <= 1 s).

    .venv/bin/python bench/swarm.py                       # 100 services x 3 replicas, 20 trials
    .venv/bin/python bench/swarm.py --services 20 --replicas 2 --trials 10

Needs root (dockerd), docker.io and busybox-static, like the Swarm tests.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import benchdb

ROOT = Path(__file__).resolve().parents[1]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()

    benchdb.setup("corral_bench_swarm")
    sys.path.insert(0, str(ROOT))
    from tests.swarm_fixtures import _teardown, start_swarm
    from tools import services

    var = services.default_var_dir() / f"swarm-{os.getpid()}"
    started = time.monotonic()
    swarm = start_swarm(var)
    print(f"swarm up in {time.monotonic() - started:.1f} s ({swarm.host})", flush=True)
    try:
        run(swarm, args)
    finally:
        _teardown(var)


def run(swarm, args):
    from clusters import sync
    from clusters.models import Cluster, ClusterMembership, Pod, Workload
    from tests.waiting import wait_for

    names = [f"bench-{i:03d}" for i in range(args.services)]
    started = time.monotonic()
    for name in names:
        swarm.docker("service", "create", "-q", "--detach", "--name", name, "--replicas", str(args.replicas), swarm.image)
    total = args.services * args.replicas

    def running():
        states = swarm.docker("service", "ls", "--format", "{{.Replicas}}", timeout=120).stdout.split()
        return sum(int(s.split("/")[0]) for s in states) >= total
    wait_for(running, 60 + total * 3, f"{total} tasks running", interval=2)
    print(f"{args.services} services x {args.replicas} replicas running after {time.monotonic() - started:.0f} s", flush=True)

    from django.contrib.auth.models import User

    owner = User.objects.create_user("bench-owner", password="bench-owner-password-1")
    cluster = Cluster.objects.create(name="bench-swarm", kind="swarm", driver="imported", state="active",
                                     api_endpoint=swarm.host, credentials=swarm.credentials)
    ClusterMembership.objects.create(cluster=cluster, user=owner, role="cluster-owner")
    started = time.monotonic()
    counts = sync.sync(cluster.pk)
    first = time.monotonic() - started
    started = time.monotonic()
    sync.sync(cluster.pk)
    again = time.monotonic() - started
    print(f"first sync {first:.2f} s ({', '.join(f'{n} {k}' for k, n in counts.items())}); resync, nothing changed, {again:.2f} s")
    assert Workload.objects.filter(cluster=cluster).count() == args.services
    assert Pod.objects.filter(cluster=cluster, phase="Running").count() == total
    asyncio.run(delays(swarm, cluster, owner, names, args))


async def delays(swarm, cluster, owner, names, args):
    from asgiref.sync import sync_to_async
    from channels.db import database_sync_to_async

    from clusters.models import Workload
    from clusters.swarm.watcher import SwarmWatch
    from tests.test_websocket import connect

    watch = SwarmWatch(cluster.pk, None)
    watch.start()
    try:
        deadline = time.monotonic() + 120
        while not watch.following.is_set():
            assert time.monotonic() < deadline, "the watcher never read the swarm"
            await asyncio.sleep(0.1)
        communicator, connected, _ = await connect(owner)
        assert connected
        await communicator.send_json_to({"action": "subscribe", "group": f"cluster-{cluster.pk}"})
        assert (await communicator.receive_json_from())["type"] == "subscribed"
        uids = dict(await database_sync_to_async(lambda: list(Workload.objects.filter(cluster=cluster).values_list("name", "uid")))())
        to_db, to_socket = [], []
        for trial in range(args.trials):
            name = names[trial % len(names)]
            want = args.replicas + 1 if trial // len(names) % 2 == 0 else args.replicas
            while not await communicator.receive_nothing(timeout=0.05):
                await communicator.receive_json_from()
            await sync_to_async(swarm.docker)("service", "scale", "--detach", f"{name}={want}")
            started = time.monotonic()
            db_at = socket_at = None
            while db_at is None or socket_at is None:
                assert time.monotonic() - started < 30, f"trial {trial}: no change within 30 s"
                if socket_at is None:
                    # (receive_nothing first: a receive that times out ends the communicator)
                    message = {} if await communicator.receive_nothing(timeout=0.01) else await communicator.receive_json_from()
                    data = message.get("data") or {}
                    if message.get("event") == "workload.updated" and data.get("uid") == uids[name] and data.get("desired_replicas") == want:
                        socket_at = time.monotonic() - started
                if db_at is None and await database_sync_to_async(
                        lambda uid=uids[name], want=want: Workload.objects.filter(uid=uid, desired_replicas=want).exists())():
                    db_at = time.monotonic() - started
            to_db.append(db_at)
            to_socket.append(socket_at)
            print(f"  trial {trial + 1:2d}: {name} -> {want}: database {db_at * 1000:.0f} ms, websocket {socket_at * 1000:.0f} ms", flush=True)
        await communicator.disconnect()
        print(f"a CLI scale to the database:  p50 {statistics.median(to_db) * 1000:.0f} ms  p95 {percentile(to_db, 95) * 1000:.0f} ms  "
              f"max {max(to_db) * 1000:.0f} ms")
        print(f"a CLI scale to the websocket: p50 {statistics.median(to_socket) * 1000:.0f} ms  p95 {percentile(to_socket, 95) * 1000:.0f} ms  "
              f"max {max(to_socket) * 1000:.0f} ms  (target p95 <= 1000 ms)")
        print(f"reads by the watcher: {watch.reads}")
    finally:
        watch.stop(wait=10)


if __name__ == "__main__":
    main()
