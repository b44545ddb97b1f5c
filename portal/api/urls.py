from django.urls import include, path
from rest_framework.routers import DefaultRouter

from clusters.api.kubeconfig import KubeconfigView
from clusters.api.urls import router as clusters_router
from monitoring.api.urls import router as monitoring_router
from portal.api import views
from projects.api.urls import router as projects_router

router = DefaultRouter(trailing_slash=True)
router.register("operations", views.OperationViewSet)
router.register("audit-events", views.AuditEventViewSet)
router.register("global-role-bindings", views.GlobalRoleBindingViewSet)
router.register("tokens", views.ApiTokenViewSet)
for other in (clusters_router, projects_router, monitoring_router):
    router.registry.extend(other.registry)

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("kubeconfig/", KubeconfigView.as_view(), name="kubeconfig"),
    path("", include(router.urls)),
]
