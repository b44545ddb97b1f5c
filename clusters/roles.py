"""Cluster roles (Rancher's): an owner may do everything in the cluster; a member may read the
cluster's cluster-scoped basics (the cluster, its nodes and namespaces) and create projects."""

CLUSTER_OWNER = "cluster-owner"
CLUSTER_MEMBER = "cluster-member"
