"""Project roles (Rancher's): an owner may do everything in the project; a member may view and
change workloads in the project's namespaces; read-only may view."""

PROJECT_OWNER = "project-owner"
PROJECT_MEMBER = "project-member"
PROJECT_READ_ONLY = "read-only"
