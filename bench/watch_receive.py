"""The event loop's CPU for each change the watcher's HTTP/2 transport receives
(``clusters/h2client.py``): N connections to one real sandbox, each with a watch of the same
namespace's ConfigMaps, then K ConfigMaps (2 KB of data each) made there, so every connection
receives K changes.  Measured on the loop's own thread (``time.thread_time``): from the first
change made until every connection has read and parsed (``orjson``) all K; the API server's own
time is not in it.

    python bench/watch_receive.py --connections 100 --changes 300
"""

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import benchdb


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    benchdb.setup("corral_bench_watch_receive")
    import orjson

    from clusters import h2client
    from clusters.proxy.upstream import GuardedBackend, ssl_context
    from clusters.sandbox import Sandbox

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def loop_cpu():
        return time.thread_time()

    async def follow(path, index, ready, counts):
        """One connection, one watch: reads and parses its changes until it has them all."""
        connection = h2client.Connection(sandbox.endpoint, ssl_context(credentials), GuardedBackend(), 30)
        await connection.open()
        try:
            response = await connection.get(path, [(b"accept", b"application/json")], 60)
            ready.append(index)
            buffer = bytearray()
            async for chunk in response.iter_chunks(600):
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    orjson.loads(bytes(buffer[start:end]))
                    start = end + 1
                    counts[index] += 1
                del buffer[:start]
                if counts[index] >= args.changes:
                    break
            await response.aclose()
        finally:
            await connection.close()

    with tempfile.TemporaryDirectory(prefix="corral-bench-receive-") as tmp:
        sandbox = Sandbox("bench-receive", Path(tmp))
        sandbox.up(nodes=0, timeout=300)
        try:
            credentials = {"ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
            print(f"{args.connections} HTTP/2 connections, each watching one namespace's ConfigMaps; "
                  f"{args.changes} ConfigMaps of 2 KB made per round")
            for round_ in range(args.rounds):
                namespace = f"receive-{round_}"
                sandbox.kubectl("create", "namespace", namespace)
                version = sandbox.api().get(f"/api/v1/namespaces/{namespace}/configmaps?limit=1")["metadata"]["resourceVersion"]
                ready, counts = [], [0] * args.connections

                path = f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={version}&timeoutSeconds=600"
                followers = [asyncio.run_coroutine_threadsafe(follow(path, i, ready, counts), loop) for i in range(args.connections)]
                deadline = time.monotonic() + 120
                while len(ready) < args.connections:
                    assert time.monotonic() < deadline, "the watches were not all answered"
                    time.sleep(0.1)
                before = asyncio.run_coroutine_threadsafe(loop_cpu(), loop).result()
                started = time.monotonic()
                items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{j}", "namespace": namespace},
                          "data": {"x": "y" * 2000}} for j in range(args.changes)]
                sandbox.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), timeout=300)
                for follower in followers:
                    follower.result(600)
                cpu = asyncio.run_coroutine_threadsafe(loop_cpu(), loop).result() - before
                received = args.connections * args.changes
                print(f"  round {round_ + 1}: {received:,} changes received in {time.monotonic() - started:.1f} s; "
                      f"the loop's CPU {cpu:.2f} s, {cpu / received * 1e6:.1f} us a change")
        finally:
            sandbox.down()


if __name__ == "__main__":
    main()
