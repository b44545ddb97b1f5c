"""Trigram indexes so that name/image searches across 200,000 pods do not scan them all.
PostgreSQL only (pg_trgm); elsewhere (SQLite for local use) this migration does nothing."""

from django.db import migrations

# The expressions are exactly what Django's icontains produces, so the planner can use them.
INDEXES = [
    ("pod_name_trgm", "clusters_pod", 'UPPER("name"::text)'),
    ("pod_images_trgm", "clusters_pod", 'UPPER("images"::text)'),
    ("workload_name_trgm", "clusters_workload", 'UPPER("name"::text)'),
    ("workload_images_trgm", "clusters_workload", 'UPPER("images"::text)'),
    ("node_name_trgm", "clusters_node", 'UPPER("name"::text)'),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, expression in INDEXES:
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin (({expression}) gin_trgm_ops)')


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("clusters", "0003_inventory_listing")]
    operations = [migrations.RunPython(create, drop)]
