from django.contrib.auth.decorators import login_required
from django.urls import path

from clusters import explore, migration_pages, pages, rows, views

urlpatterns = [
    path("clusters/<int:pk>/kubeconfig/", views.cluster_kubeconfig, name="portal-cluster-kubeconfig"),
    path("kubeconfig/", views.all_kubeconfig, name="portal-kubeconfig"),
    path("clusters/<int:pk>/explore/", explore.explore, name="portal-explore-home"),
    path("clusters/<int:pk>/explore/counts/", explore.explore_counts, name="portal-explore-counts"),
    path("clusters/<int:pk>/explore/<str:kind>/", explore.explore, name="portal-explore"),
    path("namespaces/<int:pk>/", pages.namespace_detail, name="portal-namespace"),
    path("workloads/<int:pk>/", pages.workload_detail, name="portal-workload"),
    path("pods/<int:pk>/", pages.pod_detail, name="portal-pod"),
    path("nodes/<int:pk>/", pages.node_detail, name="portal-node"),
    path("services/<int:pk>/", pages.service_detail, name="portal-service"),
    path("pods/<int:pk>/logs/", views.pod_logs, name="portal-pod-logs"),
    path("pods/<int:pk>/shell/", views.pod_shell, name="portal-pod-shell"),
    path("pods/<int:pk>/yaml/", views.pod_yaml, name="portal-pod-yaml"),
    path("workloads/<int:pk>/yaml/", views.workload_yaml, name="portal-workload-yaml"),
    path("services/<int:pk>/yaml/", views.service_yaml, name="portal-service-yaml"),
    path("workloads/<int:pk>/migrate/", migration_pages.workload_migration, name="portal-workload-migration"),
    path("namespaces/<int:pk>/migrate/", migration_pages.namespace_migration, name="portal-namespace-migration"),
    # One row of a live table, rendered for the viewer (clusters.rows); the whole table to catch up.
    *[path(f"rows/{kind}/<int:pk>/", rows.row_view(kind), name=f"portal-row-{kind}") for kind in rows.MODELS],
    path("rows/<str:kind>/", login_required(rows.rows_view), name="portal-rows"),
    # Any object: ?apiVersion=..&kind=..&namespace=..&name=.. (namespace left out for cluster-wide kinds)
    path("clusters/<int:pk>/yaml/", views.object_yaml, name="portal-object-yaml"),
]
