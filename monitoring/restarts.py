"""Pod restart history, as small as "restarts >= N within M minutes" allows.

The inventory holds each pod's restart count now.  Each evaluation of a windowed pod-restarts rule
first records, in one statement for all its clusters, the pods whose count went up since they were
last recorded: one ``RestartSample`` (previous -> restarts, when).  Pods that never restart cost
nothing; a crash-looping pod costs a row per restart (the kubelet's back-off caps that at about 12
an hour).  Rows older than a day go, except each pod's newest (the baseline of its next increase).

A pod seen with restarts and no sample yet: if its row was in the inventory at the cluster's last
recording, it had none then, so all its restarts are new; a pod new to Corral counts from zero only
if it started in the cluster after that recording (otherwise its history is unknown: a baseline).
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F, Max, Sum

from clusters.models import Pod
from monitoring.models import RESTART_HISTORY, ClusterMonitorState, RestartSample


def record(cluster_ids, now):
    """Record every restart count increase on ``cluster_ids`` since the last recording."""
    if not cluster_ids:
        return 0
    sample, pod, state = RestartSample._meta.db_table, Pod._meta.db_table, ClusterMonitorState._meta.db_table
    with transaction.atomic():
        newest_pod = Pod.objects.aggregate(m=Max("pk"))["m"] or 0
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {sample} (pod_id, cluster_id, at, restarts, previous)
                SELECT p.id, p.cluster_id, %(now)s, p.restarts,
                       COALESCE((SELECT max(s.restarts) FROM {sample} s WHERE s.pod_id = p.id),
                                CASE WHEN st.restarts_checked IS NULL THEN p.restarts
                                     WHEN p.id <= st.restarts_pod_id THEN 0
                                     WHEN p.created_in_cluster >= st.restarts_checked THEN 0
                                     ELSE p.restarts END)
                FROM {pod} p LEFT JOIN {state} st ON st.cluster_id = p.cluster_id
                WHERE p.cluster_id = ANY(%(clusters)s) AND p.restarts > 0
                  AND NOT EXISTS (SELECT 1 FROM {sample} s WHERE s.pod_id = p.id AND s.restarts >= p.restarts)
                ON CONFLICT (pod_id, restarts) DO NOTHING
                """,
                {"now": now, "clusters": list(cluster_ids)},
            )
            added = cursor.rowcount
            cursor.execute(
                f"""
                INSERT INTO {state} (cluster_id, restarts_checked, restarts_pod_id, control_plane_failing, control_plane_error)
                SELECT c, %(now)s, %(newest)s, '[]'::jsonb, '' FROM unnest(%(clusters)s::bigint[]) c
                ON CONFLICT (cluster_id) DO UPDATE SET restarts_checked = EXCLUDED.restarts_checked,
                                                       restarts_pod_id = EXCLUDED.restarts_pod_id
                """,
                {"now": now, "newest": newest_pod, "clusters": list(cluster_ids)},
            )
    return added


def within(cluster_ids, seconds, at_least, now):
    """{pod id: restarts within the last ``seconds``} for the pods with at least ``at_least``."""
    return dict(
        RestartSample.objects.filter(cluster_id__in=cluster_ids, at__gt=now - timedelta(seconds=seconds))
        .values("pod_id").annotate(n=Sum(F("restarts") - F("previous"))).filter(n__gte=max(at_least, 1)).values_list("pod_id", "n")
    )


def prune(now):
    """Drop samples older than the longest window, but each pod's newest, and those of pods gone."""
    sample, pod = RestartSample._meta.db_table, Pod._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {sample} s
            WHERE NOT EXISTS (SELECT 1 FROM {pod} p WHERE p.id = s.pod_id)
               OR (s.at < %(cutoff)s AND EXISTS (SELECT 1 FROM {sample} n WHERE n.pod_id = s.pod_id AND n.restarts > s.restarts))
            """,
            {"cutoff": now - RESTART_HISTORY},
        )
        return cursor.rowcount
