"""Writing inventory rows so that no write can undo a newer one.

Every writer of a cluster's inventory (watch events, the watcher's relists, Celery resyncs) writes
in transactions that first take that cluster's inventory lock (a PostgreSQL advisory transaction
lock), so their writes apply one after another, in one order, across processes.  On top of that
order, each write is checked against what the database holds:

- an upsert never replaces a row with an older resourceVersion (compare-and-set in the upsert);
- a deleted object's uid is remembered for a while (``InventoryTombstone``), so a list read before
  the deletion cannot bring it back (Kubernetes never reuses a uid);
- a list deletes only the rows it proves gone: absent from it, and not newer than the list.

resourceVersions are opaque strings to Kubernetes clients, but every etcd-backed API server gives
integers (etcd revisions) that grow with each change; Corral compares them as integers.  Values
that are not integers never count as older, so the later write wins, as it did before.
"""

import logging
import uuid
from datetime import timedelta

import orjson
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from clusters.models import Cluster, InventoryTombstone, Namespace

log = logging.getLogger(__name__)
USE_COPY = True  # PostgreSQL: COPY + one upsert; elsewhere (and when False) bulk_create
# PostgreSQL: up to this many rows go in one INSERT ... VALUES (no temporary table); more go through
# COPY.  psycopg binds a statement's parameters into its text in Python, which for a long VALUES
# list costs more than the temporary table: 100 pod rows took 20 ms of CPU that way against 6 ms by
# COPY; at 20 rows they cost about the same (4.5 and 3 ms), at 5 the same CPU and half the time.
VALUES_ROWS = 20
LOCK_CLASS = 0x436F72  # first key of pg_advisory_xact_lock(class, cluster): Corral's inventory
TOMBSTONE_KEEP = timedelta(hours=2)  # longer than any list may wait before it is written
MAX_WARNINGS = 50


def _integer(version):
    return version.isascii() and version.isdigit() and len(version) < 40


def rv_older(a, b):
    """Is resourceVersion ``a`` older than ``b``?  Only integers compare; anything else is not."""
    return _integer(a or "") and _integer(b or "") and int(a) < int(b)


def _rv_older_sql(a, b):
    """SQL for rv_older(a, b); CASE keeps the casts from seeing a value that is not an integer."""
    digits = "'^[0-9]{1,39}$'"
    return f"(CASE WHEN {a} ~ {digits} AND {b} ~ {digits} THEN {a}::numeric < {b}::numeric ELSE false END)"


def proven_gone(row_version, row_synced, list_version, list_started):
    """May a row that a list does not contain be deleted?  When it is not newer than the list
    (then the list would hold it if it still existed); for versions that do not compare, when the
    row was last written before the list began."""
    if _integer(row_version or "") and _integer(list_version or ""):
        return int(row_version) <= int(list_version)
    return row_synced is None or row_synced < list_started


def clean(value):
    """The value without NUL characters, which PostgreSQL text and jsonb cannot hold.  Strings are
    cleaned after decoding, so text such as a literal backslash followed by u0000 stays intact."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def lock_inventory(cluster_id):
    """Take the cluster's inventory lock until the current transaction ends (PostgreSQL; SQLite
    has one writer at a time anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, cluster_id % 2**31])


def lock_inventory_if_there(cluster_id):
    """Take the cluster's inventory lock, as ``lock_inventory``; False when the cluster is no
    longer there (deleted meanwhile), in the same round trip on PostgreSQL."""
    if connection.vendor != "postgresql":
        return Cluster.objects.filter(pk=cluster_id).exists()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock(%s, %s), EXISTS (SELECT 1 FROM {Cluster._meta.db_table} WHERE id = %s)",
                       [LOCK_CLASS, cluster_id % 2**31, cluster_id])
        return cursor.fetchone()[1]


def tombstoned(cluster, uids):
    """The uids among ``uids`` that were deleted from the cluster."""
    uids = [u for u in uids if u]
    if not uids:
        return set()
    return set(InventoryTombstone.objects.filter(cluster=cluster, uid__in=uids).values_list("uid", flat=True))


def bury(cluster, uids):
    """Remember deleted objects' uids, so that no older list brings them back."""
    now = timezone.now()
    InventoryTombstone.objects.bulk_create(
        [InventoryTombstone(cluster=cluster, uid=uid, deleted=now) for uid in uids if uid], ignore_conflicts=True, batch_size=1000
    )


def forget_old_tombstones(cluster):
    InventoryTombstone.objects.filter(cluster=cluster, deleted__lt=timezone.now() - TOMBSTONE_KEEP).delete()


def forget_namespaces(stale):
    """Namespaces gone from the cluster: those in a project are Corral's to keep (the reconciler
    makes them again), so they only lose their uid; the rest are deleted."""
    stale = stale.exclude(uid="")  # asked for by Corral, not made in the cluster yet
    stale.filter(project__isnull=False).update(uid="", phase="", resource_version="")
    return stale.filter(project__isnull=True)


# --- upserts ----------------------------------------------------------------------------------


def upsert(model, cluster, rows, unique=("cluster", "uid"), careful=True, written=None):
    """Insert or update ``rows`` (dicts of field values), except where the database holds a newer
    resourceVersion or the uid was deleted.  Rows are cleaned first.  Returns the rows that could
    not be stored, each with the reason (the others are stored all the same).

    Not ``careful``: no savepoint around the write (two round trips less), so a row the database
    refuses raises and spoils the caller's transaction; for a caller that then writes the same
    again carefully (the watcher's batches: clusters.kube.changes).

    ``written``, a list: receives the instances of the rows stored, as stored (PostgreSQL returns
    them with the write; refused rows are not among them); left None elsewhere, to read them."""
    rows = [clean(row) for row in rows]
    if not rows:
        return []
    if not careful:
        _write(model, cluster, rows, unique, written)
        return []
    def write_apart(rows):
        """In a savepoint of its own; what it stored is handed over only once that holds."""
        returned = [] if written is not None else None
        with transaction.atomic():
            _write(model, cluster, rows, unique, returned)
        if returned is not None:
            written.extend(returned)

    try:
        write_apart(rows)
        return []
    except DatabaseError as exc:
        if len(rows) == 1:
            return [(rows[0], str(exc).splitlines()[0])]
    failed = []  # one row the database refuses must not stop the others: find it, row by row
    for row in rows:
        try:
            write_apart([row])
        except DatabaseError as exc:
            failed.append((row, str(exc).splitlines()[0]))
    return failed


def _write(model, cluster, rows, unique, written=None):
    if USE_COPY and connection.vendor == "postgresql":
        upsert = _values_upsert if len(rows) <= VALUES_ROWS else _copy_upsert
        stored = upsert(model, cluster, rows, timezone.now(), unique, returning=written is not None)
        if written is not None:
            written += stored
        return
    # Elsewhere the same checks, made first (SQLite runs one writing transaction at a time).
    key = unique[-1]
    stored = dict(model.objects.filter(cluster=cluster, **{f"{key}__in": [r[key] for r in rows]}).values_list(key, "resource_version"))
    dead = tombstoned(cluster, [r.get("uid", "") for r in rows])
    rows = [r for r in rows if r.get("uid", "") not in dead and not rv_older(r.get("resource_version"), stored.get(r[key]))]
    if rows:
        now = timezone.now()
        fields = [name for name in rows[0] if name not in unique] + ["synced"]
        model.objects.bulk_create(
            [model(cluster=cluster, synced=now, **row) for row in rows],
            batch_size=1000, update_conflicts=True, unique_fields=list(unique), update_fields=fields,
        )


def _copy_upsert(model, cluster, rows, now, unique, returning=False):
    """PostgreSQL: COPY the rows into a temporary table, then one INSERT ... ON CONFLICT DO UPDATE
    that skips buried uids and rows the table holds in a newer version.  Columns the rows do not
    carry get the model's defaults on insert and are left alone on update."""
    from psycopg.types.json import Jsonb

    given = set(rows[0]) | {"cluster_id", "synced"}
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: f.get_default() for f in fields if f.attname not in given}
    columns = [f.column for f in fields]
    conflict = [model._meta.get_field(name).column for name in unique]
    table, temp = model._meta.db_table, f"corral_copy_{uuid.uuid4().hex[:12]}"
    quoted = ", ".join(f'"{c}"' for c in columns)
    updates = ", ".join(f'"{f.column}" = EXCLUDED."{f.column}"' for f in fields if f.attname in given and f.column not in conflict)
    tombstones = InventoryTombstone._meta.db_table

    def value(field, row):
        if field.attname == "cluster_id":
            return cluster.pk
        if field.attname == "synced":
            return now
        v = row.get(field.attname, defaults.get(field.attname))
        return Jsonb(v, dumps=_json) if isinstance(field, models.JSONField) else v

    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TEMPORARY TABLE "{temp}" AS SELECT {quoted} FROM "{table}" WITH NO DATA')
        raw = cursor.cursor  # psycopg's own cursor, for COPY (its errors wrapped as Django's)
        with connection.wrap_database_errors, raw.copy(f'COPY "{temp}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([value(field, row) for field in fields])
        cursor.execute(
            f'INSERT INTO "{table}" AS t ({quoted}) SELECT {quoted} FROM "{temp}" AS n '
            f'WHERE n.uid = \'\' OR NOT EXISTS (SELECT 1 FROM "{tombstones}" d WHERE d.cluster_id = %s AND d.uid = n.uid) '
            f'ON CONFLICT ({", ".join(conflict)}) DO UPDATE SET {updates} '
            f'WHERE NOT {_rv_older_sql("EXCLUDED.resource_version", "t.resource_version")}' + _returning(model, returning),
            [cluster.pk],
        )
        stored = _instances(model, cursor.fetchall()) if returning else []
        cursor.execute(f'DROP TABLE "{temp}"')
    return stored


def _upsert_parts(model, rows, unique):
    given = set(rows[0]) | {"cluster_id", "synced"}
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: f.get_default() for f in fields if f.attname not in given}
    conflict = [model._meta.get_field(name).column for name in unique]
    updates = ", ".join(f'"{f.column}" = EXCLUDED."{f.column}"' for f in fields if f.attname in given and f.column not in conflict)
    return fields, defaults, conflict, updates


def _values_upsert(model, cluster, rows, now, unique, returning=False):
    """PostgreSQL, a few rows: the same guarded upsert as ``_copy_upsert`` in one statement, the
    rows given as VALUES (each cast to its column's type) instead of through a temporary table."""
    from psycopg.types.json import Jsonb

    fields, defaults, conflict, updates = _upsert_parts(model, rows, unique)
    table, tombstones = model._meta.db_table, InventoryTombstone._meta.db_table
    quoted = ", ".join(f'"{f.column}"' for f in fields)
    # Text is cast to text, not to its column's varchar(n), which would cut an over-long value
    # silently where the column refuses it.
    casts = _casts(model, fields)
    params = []
    for row in rows:
        for field in fields:
            if field.attname == "cluster_id":
                params.append(cluster.pk)
            elif field.attname == "synced":
                params.append(now)
            else:
                v = row.get(field.attname, defaults.get(field.attname))
                params.append(Jsonb(v, dumps=_json) if isinstance(field, models.JSONField) else v)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" AS t ({quoted}) SELECT {quoted} FROM (VALUES {", ".join([casts] * len(rows))}) AS n ({quoted}) '
            f'WHERE n.uid = \'\' OR NOT EXISTS (SELECT 1 FROM "{tombstones}" d WHERE d.cluster_id = %s AND d.uid = n.uid) '
            f'ON CONFLICT ({", ".join(conflict)}) DO UPDATE SET {updates} '
            f'WHERE NOT {_rv_older_sql("EXCLUDED.resource_version", "t.resource_version")}' + _returning(model, returning),
            [*params, cluster.pk],
        )
        return _instances(model, cursor.fetchall()) if returning else []


_stored_sql = {}


def stored_values(model, cluster, key, keys, names):
    """``{key value: {name: value}}`` of the cluster's rows whose ``key`` is among ``keys``: the
    ``names`` (attnames) as ``.values(*names)`` reads them, in SQL made once per shape (building
    the ORM's query was a sixth of the watcher's CPU under a burst of changes)."""
    keys = list(keys)
    if not keys:
        return {}
    if connection.vendor != "postgresql":
        return {values[key]: values for values in model.objects.filter(cluster=cluster, **{f"{key}__in": keys}).order_by().values(*names)}
    shape = (model, key, tuple(names))
    if shape not in _stored_sql:
        fields = [model._meta.get_field(name) for name in names]
        columns = ", ".join(f'"{f.column}"' for f in fields)
        _stored_sql[shape] = (f'SELECT {columns} FROM "{model._meta.db_table}" WHERE cluster_id = %s '
                              f'AND "{model._meta.get_field(key).column}" = ANY(%s)', fields)
    sql, fields = _stored_sql[shape]
    with connection.cursor() as cursor:
        cursor.execute(sql, [cluster.pk, keys])
        rows = cursor.fetchall()
    found = {}
    for row in _converted(fields, rows):
        values = dict(zip(names, row))
        found[values[key]] = values
    return found


def _converted(fields, rows):
    """``rows`` (tuples of ``fields``' columns) with each value converted as the ORM converts what
    it reads (a JSON column's text parsed)."""
    converters = [(i, f.get_db_converters(connection)) for i, f in enumerate(fields) if f.get_db_converters(connection)]
    for row in rows:
        if converters:
            row = list(row)
            for i, field_converters in converters:
                for convert in field_converters:
                    row[i] = convert(row[i], fields[i], connection)
        yield row


def _returning(model, returning):
    """RETURNING every column of the rows the upsert stored (inserted or updated; not those it refused)."""
    if not returning:
        return ""
    return " RETURNING " + ", ".join(f't."{f.column}"' for f in model._meta.concrete_fields)


def _instances(model, rows):
    """Model instances of rows of every concrete column (``_returning``), converted as the ORM
    converts what it reads."""
    fields = model._meta.concrete_fields
    names = [f.attname for f in fields]
    return [model.from_db(connection.alias, names, row) for row in _converted(fields, rows)]


_casts_made = {}


def _casts(model, fields):
    """``(CAST(%s AS type), ...)``: one VALUES row of ``fields``, made once per model and fields."""
    shape = (model, tuple(f.attname for f in fields))
    if shape not in _casts_made:
        _casts_made[shape] = "(" + ", ".join(
            f"CAST(%s AS {'text' if isinstance(f, (models.CharField, models.TextField)) else f.db_type(connection)})" for f in fields) + ")"
    return _casts_made[shape]


def refresh_versions(model, cluster, versions, key="uid"):
    """Store newer resourceVersions (``{key: version}``) of rows whose content did not change (a
    node's heartbeat): one UPDATE, never to an older version, so the guard stays exact."""
    if not versions:
        return
    if connection.vendor != "postgresql":
        stored = dict(model.objects.filter(cluster=cluster, **{f"{key}__in": list(versions)}).values_list(key, "resource_version"))
        for k, version in versions.items():
            if k in stored and not rv_older(version, stored[k]):
                model.objects.filter(cluster=cluster, **{key: k}).update(resource_version=version, synced=timezone.now())
        return
    table, column = model._meta.db_table, model._meta.get_field(key).column
    pairs = ", ".join(["(%s, %s)"] * len(versions))
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS t SET resource_version = n.version, synced = %s FROM (VALUES {pairs}) AS n (k, version) '
            f'WHERE t.cluster_id = %s AND t."{column}" = n.k AND t.resource_version <> n.version '
            f'AND NOT {_rv_older_sql("n.version", "t.resource_version")}',
            [timezone.now(), *(v for pair in versions.items() for v in pair), cluster.pk],
        )


def _json(value):
    return orjson.dumps(value).decode()


# --- deletions --------------------------------------------------------------------------------


def delete_unlisted(model, cluster, listed, list_version, list_started, key="uid", **scope):
    """Delete the cluster's rows (within ``scope``) that a list left out and that it proves gone;
    remember their uids.  Returns how many went."""
    rows = model.objects.filter(cluster=cluster, **scope).order_by()
    if connection.vendor == "postgresql":  # only the rows the list left out come back
        rows = rows.extra(where=[f'NOT ("{model._meta.db_table}"."{model._meta.get_field(key).column}" = ANY(%s))'], params=[list(listed)])
    rows = rows.values_list("pk", key, "resource_version", "synced")
    candidates = [pk for pk, k, version, synced in rows if k not in listed and proven_gone(version, synced, list_version, list_started)]
    if not candidates:
        return 0
    with transaction.atomic():
        lock_inventory(cluster.pk)
        # Read again under the lock: a watch event may have written a newer version meanwhile.
        rows = model.objects.select_for_update().filter(pk__in=candidates).values_list("pk", "uid", "resource_version", "synced")
        gone = {pk: uid for pk, uid, version, synced in rows if proven_gone(version, synced, list_version, list_started)}
        stale = model.objects.filter(pk__in=list(gone))
        if model is Namespace:
            stale = forget_namespaces(stale)
        stale.delete()
        bury(cluster, gone.values())
    return len(gone)


def record_warnings(cluster_id, warnings, replace=False):
    """Show objects Corral could not store on the cluster's page (``replace``: a full sync's list
    replaces what was there; otherwise they are added)."""
    if replace and not warnings and not Cluster.objects.filter(pk=cluster_id).exclude(sync_warnings=[]).exists():
        return  # nothing to show, nothing shown: no write (a resync that found nothing odd)
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().filter(pk=cluster_id).only("sync_warnings").first()
        if cluster is None:
            return
        current = [] if replace else [w for w in cluster.sync_warnings if w.get("uid") not in {n.get("uid") for n in warnings}]
        merged = (current + list(warnings))[-MAX_WARNINGS:]
        if merged != cluster.sync_warnings:
            Cluster.objects.filter(pk=cluster_id).update(sync_warnings=merged)


def trim_events(cluster, keep=None):
    """Keep the cluster's newest ``keep`` events (MAX_EVENTS), under the inventory lock."""
    from clusters.kube.inventory import MAX_EVENTS
    from clusters.models import ClusterEvent

    keep = MAX_EVENTS if keep is None else keep
    with transaction.atomic():
        lock_inventory(cluster.pk)
        newest = ClusterEvent.objects.filter(cluster=cluster).order_by("-last_seen", "-pk").values_list("pk", flat=True)[:keep]
        ClusterEvent.objects.filter(cluster=cluster).exclude(pk__in=list(newest)).delete()
