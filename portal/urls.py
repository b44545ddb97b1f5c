from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from monitoring import views as monitoring_views
from portal import dashboard, views
from portal.accounts import views as account_views

admin.site.site_header = "Corral administration"
admin.site.site_title = "Corral"
admin.site.index_title = "Platform"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("clusters/<int:pk>/row/", dashboard.cluster_row, name="portal-cluster-row"),
    path("fleet/health/", dashboard.fleet_health_fragment, name="portal-fleet-health"),
    path("fleet/nodes-not-ready/", dashboard.nodes_not_ready, name="portal-nodes-not-ready"),
    path("fleet/workloads-degraded/", dashboard.workloads_degraded, name="portal-workloads-degraded"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("clusters/import/", views.cluster_import, name="cluster-import"),
    path("clusters/new/", views.cluster_create, name="cluster-create"),
    path("clusters/<int:pk>/remove/", views.cluster_remove, name="portal-cluster-remove"),
    path("clusters/<int:pk>/members/", views.cluster_members, name="portal-cluster-members"),
    path("clusters/<int:pk>/", views.cluster_detail, name="portal-cluster"),
    path("search/", views.search, name="search"),
    path("", include("clusters.urls")),
    path("projects/", include("projects.urls")),
    path("alerts/", monitoring_views.alert_list, name="portal-alerts"),
    path("operations/<int:pk>/", views.operation_detail, name="portal-operation"),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("account/", include("portal.accounts.urls")),
    path("manage/", include("portal.accounts.manage_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script for the CSP to refuse.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="portal/api_docs.html"), name="api-docs"),
]

handler404 = "portal.api.exceptions.not_found"  # JSON under /api/, the page elsewhere
handler500 = "portal.outage.server_error"  # a database or Redis outage is a 503 naming it
