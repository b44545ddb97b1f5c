from rest_framework.routers import DefaultRouter

from clusters.api import views

router = DefaultRouter(trailing_slash=True)
router.register("clusters", views.ClusterViewSet)
router.register("cluster-memberships", views.ClusterMembershipViewSet)
router.register("nodes", views.NodeViewSet)
router.register("namespaces", views.NamespaceViewSet)
router.register("workloads", views.WorkloadViewSet)
router.register("pods", views.PodViewSet)
router.register("services", views.ServiceViewSet)
router.register("events", views.ClusterEventViewSet)
router.register("swarm-objects", views.SwarmObjectViewSet)
