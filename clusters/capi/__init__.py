"""Cluster API (CAPI): provisioning clusters through a management cluster's CAPI controllers.

A cluster Corral manages that runs the CAPI controllers (its API serves cluster.x-k8s.io) may be
marked a management cluster (``Cluster.is_management``, by its owners).  Its ClusterClasses are the
templates clusters are made from (``classes``); the ``capi`` driver (``driver``) writes a Cluster
object with a managed topology into it, follows CAPI's conditions as an operation, and manages the
workload cluster through the kubeconfig Secret CAPI writes (``<name>-kubeconfig``) once its control
plane is available.  Everything Corral writes there carries the labels in ``LABELS``.
"""

GROUP = "cluster.x-k8s.io"
VERSION = "v1beta2"
API = f"/apis/{GROUP}/{VERSION}"
MANAGED_BY = "corral.io/managed-by"
CLUSTER_ID = "corral.io/cluster-id"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"  # CAPI's own label on what belongs to a Cluster


def labels(cluster):
    """The labels on everything Corral writes into a management cluster for ``cluster``."""
    return {MANAGED_BY: "corral", CLUSTER_ID: str(cluster.pk)}
