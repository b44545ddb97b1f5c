"""Any committed change to what a cluster should enforce asks for a reconcile of that cluster and
marks its projects as reconciling."""

from django.contrib.auth.models import Group
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from clusters.models import ClusterMembership, Namespace
from projects.models import Project, ProjectMembership, ProjectSyncState


def _changed(cluster_id, project_ids=()):
    from projects.tasks import request_reconcile

    ids = [pk for pk in project_ids if pk]
    if ids:
        Project.objects.filter(pk__in=ids).exclude(sync_state=ProjectSyncState.RECONCILING).update(
            sync_state=ProjectSyncState.RECONCILING
        )
    request_reconcile(cluster_id)


@receiver(post_save, sender=Project)
@receiver(post_delete, sender=Project)
def _project_changed(sender, instance, raw=False, **kwargs):
    if not raw:
        _changed(instance.cluster_id, [instance.pk] if kwargs.get("signal") is post_save else [])


@receiver(post_save, sender=ProjectMembership)
@receiver(post_delete, sender=ProjectMembership)
def _membership_changed(sender, instance, raw=False, **kwargs):
    if raw:
        return
    project = Project.objects.filter(pk=instance.project_id).values_list("cluster_id", flat=True).first()
    if project is not None:
        _changed(project, [instance.project_id])


@receiver(post_save, sender=ClusterMembership)
@receiver(post_delete, sender=ClusterMembership)
def _cluster_membership_changed(sender, instance, raw=False, **kwargs):
    if not raw:
        _changed(instance.cluster_id)


@receiver(post_save, sender=Namespace)
def _namespace_saved(sender, instance, raw=False, **kwargs):
    # Only namespaces in a project, or just moved out of one (the move sets _corral_project_before);
    # the watcher saves every namespace it sees.
    before = getattr(instance, "_corral_project_before", None)
    if not raw and (instance.project_id is not None or before is not None):
        _changed(instance.cluster_id, [instance.project_id, before])


@receiver(post_delete, sender=Namespace)
def _namespace_deleted(sender, instance, **kwargs):
    if instance.project_id:
        _changed(instance.cluster_id, [instance.project_id])


@receiver(post_save, sender=Group)
def _group_renamed(sender, instance, created=False, raw=False, **kwargs):
    # RoleBindings name groups; a renamed group changes the subject in every cluster it is bound in.
    if raw or created:
        return
    clusters = set(ProjectMembership.objects.filter(group=instance).values_list("project__cluster_id", flat=True))
    clusters |= set(ClusterMembership.objects.filter(group=instance).values_list("cluster_id", flat=True))
    for cluster_id in clusters:
        _changed(cluster_id)
