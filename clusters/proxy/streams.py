"""Open streams (watches, logs -f, exec sessions) by the token or portal session that opened them,
so a token that is revoked or expires, a session signed out, or a user deactivated, has its streams
closed within ``PROXY_TOKEN_RECHECK_SECONDS``: one query for all of a process's open token
streams (and one per open page session), not one each."""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from clusters.proxy import access

log = logging.getLogger("corral.proxy")

_open = {}  # ("token", id) or ("session", key) -> set of asyncio tasks serving its streams
# Token decisions (who, which cluster, whom to impersonate) kept a moment: kubectl sends bursts of
# calls, and the database need not answer the same question for each.  A revoked token, a role
# removed or a cluster gone take effect within PROXY_DECISION_CACHE_SECONDS; a token found
# unusable here is forgotten at once.  (sha256 of the token, cluster id, safe method) -> (until, Target)
decisions = {}
_checker = None


def register(key, task):
    global _checker
    _open.setdefault(key, set()).add(task)
    if _checker is None or _checker.done():
        _checker = asyncio.get_running_loop().create_task(_check_forever())


def unregister(key, task):
    tasks = _open.get(key)
    if tasks is not None:
        tasks.discard(task)
        if not tasks:
            _open.pop(key, None)


def open_count():
    return sum(len(tasks) for tasks in _open.values())


async def _check_forever():
    while _open:
        await asyncio.sleep(settings.PROXY_TOKEN_RECHECK_SECONDS)
        ids = list(_open)
        if not ids:
            break
        try:
            usable = await database_sync_to_async(access.still_usable)(ids)
        except Exception:  # noqa: BLE001 - a database hiccup must not close anyone's streams
            log.exception("could not recheck the tokens of open proxy streams")
            continue
        gone = set(ids) - usable
        for key in [k for k, (_, target) in decisions.items() if target.stream_key in gone]:
            decisions.pop(key, None)
        for key in gone:
            for task in list(_open.pop(key, ())):
                task.cancel("token or session no longer usable")
