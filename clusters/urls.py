from django.urls import path

from clusters import views

urlpatterns = [
    path("clusters/<int:pk>/kubeconfig/", views.cluster_kubeconfig, name="portal-cluster-kubeconfig"),
    path("kubeconfig/", views.all_kubeconfig, name="portal-kubeconfig"),
    path("pods/<int:pk>/logs/", views.pod_logs, name="portal-pod-logs"),
    path("pods/<int:pk>/shell/", views.pod_shell, name="portal-pod-shell"),
    path("pods/<int:pk>/yaml/", views.pod_yaml, name="portal-pod-yaml"),
    path("workloads/<int:pk>/yaml/", views.workload_yaml, name="portal-workload-yaml"),
    path("services/<int:pk>/yaml/", views.service_yaml, name="portal-service-yaml"),
    # Any object: ?apiVersion=..&kind=..&namespace=..&name=.. (namespace left out for cluster-wide kinds)
    path("clusters/<int:pk>/yaml/", views.object_yaml, name="portal-object-yaml"),
]
