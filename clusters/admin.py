from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from clusters import lifecycle, tasks
from clusters.drivers import refuse_new_cluster, sandbox_nodes_error
from clusters.events import cluster_changed
from clusters.models import (
    Cluster,
    ClusterDriver,
    ClusterEvent,
    ClusterMembership,
    Namespace,
    Node,
    Pod,
    Service,
    Workload,
    name_taken_error,
)
from portal.admin_base import ChangeLoggedAdmin, ReadOnlyAdmin, RestrictedInline
from portal.permissions import DELETE


class ClusterForm(forms.ModelForm):
    # Adding a cluster here provisions one (importing has its own page): a sandbox by default,
    # sized by a node count rather than JSON.
    nodes = forms.IntegerField(required=False, min_value=1, initial=3,
                               help_text="Sandbox: how many nodes (at most PORTAL_SANDBOX_MAX_NODES)")

    class Meta:
        model = Cluster
        fields = ["name", "description", "labels", "driver", "nodes", "provider", "driver_config", "is_management"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None and "driver" in self.fields:
            self.fields["driver"].initial = ClusterDriver.SANDBOX
        if "driver_config" in self.fields:
            self.fields["driver_config"].help_text = "Further driver options (JSON); the node count above wins"

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and data.get("driver") == ClusterDriver.SANDBOX and data.get("nodes"):
            data["driver_config"] = {**(data.get("driver_config") or {}), "nodes": data["nodes"]}
        if self.instance.pk is None and data.get("driver") == ClusterDriver.IMPORTED:
            raise forms.ValidationError("To add a cluster that exists already, use “Import a cluster” on the cluster list.")
        if self.instance.pk is not None and data.get("driver") != self.instance.driver:
            self.add_error("driver", "the driver of an existing cluster cannot change")
        if data.get("driver") == ClusterDriver.SANDBOX and self.instance.pk is None:
            problem = sandbox_nodes_error(data.get("driver_config"))
            if problem:
                self.add_error("driver_config", problem)
        if data.get("driver") == ClusterDriver.CAPI:
            self._clean_capi(data)
        if data.get("is_management") and not self.instance.is_management:
            self._clean_management()
        return data

    def _clean_capi(self, data):
        """The API's checks (clusters.capi.classes), each problem named by its field."""
        from clusters.capi.classes import check_request

        if self.instance.pk is not None:
            if data.get("driver_config") != self.instance.driver_config:
                self.add_error("driver_config", "scale pools and upgrade on the cluster's page or through the API")
            return
        data["driver_config"], errors = check_request(data.get("driver_config"), getattr(self, "request_user", None))
        for field, message in errors.items():
            self.add_error("driver_config", f"{field}: {message}")

    def _clean_management(self):
        from clusters.capi.classes import management_problem

        problem = management_problem(self.instance)
        if problem:
            self.add_error("is_management", problem)


class MembershipInline(RestrictedInline):
    model = ClusterMembership
    autocomplete_fields = ("user", "group")
    fields = ("role", "user", "group")


@admin.register(Cluster)
class ClusterAdmin(ChangeLoggedAdmin):
    form = ClusterForm
    list_display = ("name", "kind", "state", "driver", "provider", "kubernetes_version", "api_endpoint", "last_seen", "created_by")
    list_filter = ("kind", "state", "driver", "provider", "is_management")
    search_fields = ("name", "slug", "description", "api_endpoint")
    readonly_fields = (
        "kind", "state", "state_since", "kubernetes_version", "api_endpoint", "last_seen", "last_error", "last_synced",
        "credentials_status", "created", "modified", "created_by",
    )
    inlines = [MembershipInline]
    actions = ["sync_now", "check_now", "remove_clusters"]
    action_permissions = {"delete_selected": DELETE, "remove_clusters": DELETE}
    change_list_template = "admin/clusters/cluster/change_list.html"

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user  # a capi request is checked against what this user may see
        return form

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return fields if obj is None else [f for f in fields if f != "nodes"]

    def get_urls(self):
        from django.urls import path

        return [path("import/", self.admin_site.admin_view(self.import_view), name="clusters_cluster_import"), *super().get_urls()]

    def import_view(self, request):
        """Import a running cluster (kubeconfig, or server + CA + token), checked before storing."""
        from django.shortcuts import redirect
        from django.template.response import TemplateResponse

        from clusters.forms import ClusterImportForm

        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        problem = refuse_new_cluster(request.user, ClusterDriver.IMPORTED)
        if problem:
            self.message_user(request, problem, messages.ERROR)
            return redirect("admin:clusters_cluster_changelist")
        form = ClusterImportForm(request.POST or None, request.FILES or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            cluster = form.save(request.user)
            self.message_user(request, f"Imported {cluster.name} (Kubernetes {cluster.kubernetes_version}); its first sync has started.")
            return redirect("admin:clusters_cluster_change", cluster.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "title": "Import a cluster"}
        return TemplateResponse(request, "admin/clusters/cluster/import.html", context)

    def refuse_save(self, request, instance, data):
        if instance.pk is None:
            problem = refuse_new_cluster(request.user, data.get("driver"))
            if problem:
                return problem
        if "name" in data:
            problem = name_taken_error(data["name"], request.user, exclude_pk=instance.pk)
            if problem:
                return problem
        return super().refuse_save(request, instance, data)

    @admin.display(description="credentials")
    def credentials_status(self, obj):
        return "stored (encrypted)" if obj.has_credentials else "none"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            op = lifecycle.start_provisioning(obj, request.user)
            url = reverse("portal-operation", args=[op.pk])
            self.message_user(request, format_html('Provisioning started: <a href="{}">follow it</a>.', url))
        else:
            cluster_changed(obj)

    # Deleting a cluster is its removal (the same operation the API and the portal start): the
    # confirmation names what happens instead of listing inventory rows nobody deletes by hand, so
    # read-only inventory does not make the red Delete a dead end.
    def get_deleted_objects(self, objs, request):
        consequences = [line for cluster in objs for line in lifecycle.removal_consequences(cluster)]
        return consequences, {"clusters": len(objs)}, set(), []

    def delete_model(self, request, obj):
        self._remove(request, [obj])

    def delete_queryset(self, request, queryset):
        self._remove(request, list(queryset))

    def response_delete(self, request, obj_display, obj_id):
        self.message_user(request, f"Removal of {obj_display} started; follow it under Operations.")
        from django.shortcuts import redirect

        return redirect("admin:clusters_cluster_changelist")

    def _remove(self, request, clusters):
        for cluster in clusters:
            try:
                lifecycle.start_removal(cluster, request.user)
            except lifecycle.Refused as refused:
                self.message_user(request, f"{cluster.name}: {refused}", messages.WARNING)

    @admin.action(description="Sync inventory now")
    def sync_now(self, request, queryset):
        started = 0
        for cluster in queryset.monitored():
            lifecycle.start_sync(cluster, request.user)
            started += 1
        self.message_user(request, f"started a sync of {started} cluster(s); follow them under Operations")
        if started < queryset.count():
            self.message_user(request, "clusters that are not active or unavailable were skipped", messages.WARNING)

    @admin.action(description="Check health now")
    def check_now(self, request, queryset):
        ids = list(queryset.monitored().values_list("pk", flat=True))
        for pk in ids:
            transaction.on_commit(lambda pk=pk: tasks.check_cluster.delay(pk))
        skipped = queryset.count() - len(ids)
        self.message_user(request, f"queued a health check for {len(ids)} cluster(s)")
        if skipped:
            self.message_user(request, f"{skipped} cluster(s) skipped: only active or unavailable clusters are checked", messages.WARNING)

    @admin.action(description="Remove the selected clusters (sandboxes are torn down; imported clusters are only forgotten)")
    def remove_clusters(self, request, queryset):
        self._remove(request, list(queryset))
        self.message_user(request, "removal started")


@admin.register(ClusterMembership)
class ClusterMembershipAdmin(ChangeLoggedAdmin):
    list_display = ("cluster", "role", "user", "group", "created")
    list_filter = ("role", "cluster")
    search_fields = ("cluster__name", "user__username", "group__name")
    autocomplete_fields = ("user", "group")


class InventoryAdmin(ReadOnlyAdmin):
    list_select_related = ("cluster",)
    search_fields = ("name", "uid")
    list_filter = ("cluster",)


@admin.register(Node)
class NodeAdmin(InventoryAdmin):
    list_display = ("name", "cluster", "ready", "unschedulable", "kubelet_version", "internal_ip", "cpu_allocatable_m", "memory_allocatable_bytes")
    list_filter = ("cluster", "ready", "unschedulable", "kubelet_version")


@admin.register(Namespace)
class NamespaceAdmin(InventoryAdmin):
    list_display = ("name", "cluster", "project", "phase")
    list_select_related = ("cluster", "project")
    list_filter = ("cluster", "phase", ("project", admin.RelatedOnlyFieldListFilter))


@admin.register(Workload)
class WorkloadAdmin(InventoryAdmin):
    list_display = ("name", "kind", "namespace", "cluster", "desired_replicas", "ready_replicas", "image_list")
    list_select_related = ("cluster", "namespace")
    list_filter = ("cluster", "kind")
    search_fields = ("name", "uid", "images")

    @admin.display(description="images")
    def image_list(self, obj):
        return ", ".join(obj.images)


@admin.register(Pod)
class PodAdmin(InventoryAdmin):
    list_display = ("name", "namespace", "cluster", "phase", "ready", "restarts", "node_name", "pod_ip")
    list_select_related = ("cluster", "namespace")
    list_filter = ("cluster", "phase", "ready")
    search_fields = ("name", "uid", "node_name", "images")


@admin.register(Service)
class ServiceAdmin(InventoryAdmin):
    list_display = ("name", "namespace", "cluster", "type", "cluster_ip")
    list_select_related = ("cluster", "namespace")
    list_filter = ("cluster", "type")


@admin.register(ClusterEvent)
class ClusterEventAdmin(InventoryAdmin):
    list_display = ("last_seen", "type", "reason", "involved_kind", "involved_name", "namespace", "cluster", "count")
    list_select_related = ("cluster", "namespace")
    list_filter = ("cluster", "type", "reason")
    search_fields = ("reason", "message", "involved_name")
