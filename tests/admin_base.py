"""A generic test base every registered admin inherits, as tests/api_base.py is for the API: a
staff user of another tenant (``stranger``, who owns cluster B) sees nothing of tenant A in the
changelist (rows, filters, search), gets the admin index or a refusal (never the object) on A's
object pages, cannot add a row into A's scope with the very form data that works for a
superuser, is not offered A's objects in any form choice, and the autocomplete lists none of them.

``TENANT_A`` says how to make one object of tenant A for each registered model (None: a platform
model, administrators only, with no tenant).  A model registered in the admin without an entry
fails ``test_every_registered_admin_says_how_to_make_its_object``, so a new admin gets the tests.
"""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.urls import reverse

from clusters.models import ClusterEvent, ClusterMembership, Node, Pod, Service, Workload
from monitoring.models import Alert, AlertRule, Notification, Notifier
from portal.admin_base import RestrictedAdmin
from portal.models import ApiToken, GlobalRoleBinding, Operation
from projects.models import ProjectMembership


def _alert_rule(world):
    return AlertRule.objects.get_or_create(name="alpha-rule", cluster=world.cluster, defaults={"condition": "node-not-ready"})[0]


TENANT_A = {
    "auth.user": lambda world: world.owner,
    "auth.group": lambda world: _alpha_group(world),
    "django_celery_beat.periodictask": None,
    "django_celery_beat.clockedschedule": None,
    "django_celery_beat.crontabschedule": None,
    "django_celery_beat.solarschedule": None,
    "django_celery_beat.intervalschedule": None,
    # django-axes' login records (names and addresses): administrators only.
    "axes.accessattempt": None,
    "axes.accesslog": None,
    "axes.accessfailurelog": None,
    "portal.globalrolebinding": lambda world: GlobalRoleBinding.objects.get(user=world.owner, role="clusters-create"),
    "portal.auditevent": lambda world: _audit_event(world),
    "portal.operation": lambda world: Operation.objects.create(kind="sync", cluster=world.cluster, created_by=world.owner, target_repr="alpha"),
    "portal.apitoken": lambda world: ApiToken.issue(world.owner, description="alpha deploys")[0],
    "clusters.cluster": lambda world: world.cluster,
    "clusters.clustermembership": lambda world: ClusterMembership.objects.get(cluster=world.cluster, user=world.owner),
    "clusters.node": lambda world: Node.objects.create(cluster=world.cluster, uid="alpha-n1", name="alpha-node-1"),
    "clusters.namespace": lambda world: world.namespace,
    "clusters.workload": lambda world: Workload.objects.create(
        cluster=world.cluster, namespace=world.namespace, uid="alpha-w1", name="alpha-frontend", kind="deployment"
    ),
    "clusters.pod": lambda world: Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="alpha-p1", name="alpha-frontend-1"),
    "clusters.service": lambda world: Service.objects.create(cluster=world.cluster, namespace=world.namespace, uid="alpha-s1", name="alpha-web"),
    "clusters.clusterevent": lambda world: ClusterEvent.objects.create(
        cluster=world.cluster, namespace=world.namespace, uid="alpha-e1", name="alpha-event", reason="BackOff",
        involved_kind="Pod", involved_name="alpha-frontend-1",
    ),
    "projects.project": lambda world: world.project,
    "projects.projectmembership": lambda world: ProjectMembership.objects.get(project=world.project, user=world.member),
    # An e-mail notifier of cluster A: what it needs is not secret, so the admin form copies it whole.
    "monitoring.notifier": lambda world: Notifier.objects.create(
        name="alpha-pager", kind="email", cluster=world.cluster,
        config={"recipients": ["oncall@alpha.example.com"], "host": "smtp.alpha.example.com"}),
    "monitoring.alertrule": _alert_rule,
    "monitoring.alert": lambda world: Alert.objects.create(rule=_alert_rule(world), cluster=world.cluster, target="node/alpha-node-1"),
    # Notifications name notifiers and what was sent: they follow their notifier (project A's here).
    "monitoring.notification": lambda world: Notification.objects.create(
        notifier=Notifier.objects.create(name="alpha-hook", kind="webhook", project=world.project, cluster=world.cluster,
                                         config={"url": "https://alpha.example.com/h"}),
        rule=_alert_rule(world), cluster=world.cluster, kind="firing", subject="[FIRING:1] alpha-rule on alpha",
    ),
}


def _alpha_group(world):
    group = Group.objects.create(name="alpha-team")
    world.owner.groups.add(group)
    return group


def _audit_event(world):
    from portal.models import AuditEvent

    return AuditEvent.objects.create(
        user=world.owner, username="owner", source="admin", action="update", object_type="clusters.cluster",
        object_id=str(world.cluster.pk), object_repr="alpha",
    )


def registered_models():
    return sorted(admin.site._registry, key=lambda model: model._meta.label_lower)


def label(model):
    return model._meta.label_lower


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def request_as(user, method="get", path="/admin/"):
    request = getattr(RequestFactory(), method)(path)
    request.user = user
    return request


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def tenant_a_objects(world):
    """Everything of tenant A a form could offer: {model: pks}."""
    made = {}
    for model in registered_models():
        factory = TENANT_A.get(label(model))
        if factory is not None:
            obj = factory(world)
            made.setdefault(type(obj), set()).add(obj.pk)
    for obj in (world.cluster, world.project, world.namespace, world.owner, world.viewer, world.member):
        made.setdefault(type(obj), set()).add(obj.pk)
    return made


def copy_data(model_admin, obj, world, subject):
    """POST data for the add form: the superuser's form for a copy of ``obj`` (same scope, a new
    name, granted to ``subject``), inlines empty."""
    request = request_as(world.admin)
    form = model_admin.get_form(request, None)(instance=obj)
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        data[name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else value
    if "name" in data:
        data["name"] = f"{data['name']}-copy"
    if "slug" in data:
        data["slug"] = ""
    if "user" in data or "group" in data:
        data["user"] = str(subject.pk)
        data.pop("group", None)
    for inline in model_admin.get_inline_instances(request):
        prefix = inline.get_formset(request).get_default_prefix()
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return data


class AdminTenancyTests:
    """The tests every registered admin gets; the ``model`` fixture walks the admin registry."""

    @pytest.fixture(params=registered_models(), ids=label)
    def model(self, request):
        return request.param

    def make(self, world, model):
        factory = TENANT_A[label(model)]
        return factory(world) if factory is not None else None

    def test_every_registered_admin_says_how_to_make_its_object(self, model):
        assert label(model) in TENANT_A, f"add {label(model)} to TENANT_A in tests/admin_base.py"

    def test_changelist_shows_nothing_of_the_other_tenant(self, world, model):
        obj = self.make(world, model)
        if obj is not None:
            page = signed_in(world.admin).get(url(model, "changelist")).content.decode()
            assert url(model, "change", obj.pk) in page  # the superuser sees it: the check below means something
        client = signed_in(world.stranger)
        for params in ({}, {"q": "alpha"}, {"o": "1"}):
            response = client.get(url(model, "changelist"), params)
            assert response.status_code in (200, 403)
            page = response.content.decode()
            # The search box and the filter links echo the term itself.
            for echo in ('value="alpha"', "q=alpha", "q%3Dalpha"):
                page = page.replace(echo, "")
            assert "alpha" not in page
            if obj is not None:
                assert url(model, "change", obj.pk) not in page

    def test_people_who_are_not_staff_are_sent_to_sign_in(self, world, model):
        obj = self.make(world, model)
        client = signed_in(world.member)  # project member of P, not staff
        pages = [url(model, "changelist"), url(model, "add")] + ([url(model, "change", obj.pk)] if obj is not None else [])
        for page in pages:
            response = client.get(page)
            assert response.status_code == 302 and "/login/" in response["Location"], page

    def test_object_pages_are_not_found(self, world, model):
        obj = self.make(world, model)
        if obj is None:
            pytest.skip("a platform model: no tenant object")
        client = signed_in(world.stranger)
        for view in ("change", "delete", "history"):
            response = client.get(url(model, view, obj.pk))
            assert response.status_code in (302, 403, 404), view
            if response.status_code == 302:
                assert response["Location"] == reverse("admin:index")
            assert "alpha" not in response.content.decode()
        before = model._default_manager.filter(pk=obj.pk).values().first()
        assert client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code in (302, 403, 404)
        assert client.post(url(model, "change", obj.pk), {"name": "taken"}).status_code in (302, 403, 404)
        assert model._default_manager.filter(pk=obj.pk).values().first() == before

    def test_cannot_add_into_the_other_tenants_scope(self, world, model):
        model_admin = admin.site._registry[model]
        obj = self.make(world, model)
        stranger = signed_in(world.stranger)
        writable = isinstance(model_admin, RestrictedAdmin) and model_admin.has_add_permission(request_as(world.admin))
        if obj is None or not writable:
            assert stranger.get(url(model, "add")).status_code == 403
            return
        data = copy_data(model_admin, obj, world, world.stranger)
        count = model._default_manager.count()
        response = stranger.post(url(model, "add"), data)
        assert response.status_code in (200, 403)
        if response.status_code == 200:
            # Refused by the choices (A's cluster is not one of the stranger's) or by the save check.
            page = response.content.decode()
            assert any(why in page for why in ("Select a valid choice", "You may not", "needs the global permission")), page[-3000:]
        assert model._default_manager.count() == count
        # The same data is fine for a superuser: the refusal was the permission, not the data.
        response = signed_in(world.admin).post(url(model, "add"), data)
        assert response.status_code == 302, response.content.decode()[-3000:]
        assert model._default_manager.count() == count + 1

    def test_form_choices_offer_nothing_of_the_other_tenant(self, world, model):
        model_admin = admin.site._registry[model]
        theirs = tenant_a_objects(world)
        request = request_as(world.stranger)
        forms = []
        if model_admin.has_add_permission(request):
            forms.append(model_admin.get_form(request, None)())
            for formset, _ in model_admin.get_formsets_with_inlines(request):
                forms.append(formset().empty_form)
            page = signed_in(world.stranger).get(url(model, "add")).content.decode()
            assert "alpha" not in page
        for form in forms:
            for name, field in form.fields.items():
                if field.widget.is_hidden:
                    continue  # an inline row's own id: looked up in the inline's restricted queryset
                queryset = getattr(field, "queryset", None)
                if queryset is not None and queryset.model in theirs:
                    offered = set(queryset.filter(pk__in=theirs[queryset.model]).values_list("pk", flat=True))
                    assert not offered, f"{label(model)}.{name} offers {queryset.model.__name__} {offered}"

    def test_autocomplete_lists_nothing_of_the_other_tenant(self, world, model):
        theirs = tenant_a_objects(world)
        client = signed_in(world.stranger)
        for field in model._meta.get_fields():
            if not (field.is_relation and (field.many_to_one or field.many_to_many) and field.concrete):
                continue
            remote = field.remote_field.model
            remote_admin = admin.site._registry.get(remote)
            if remote_admin is None or not remote_admin.search_fields:
                continue
            for term in ("", "alpha", "o"):
                response = client.get(reverse("admin:autocomplete"), {
                    "app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field.name, "term": term,
                })
                assert response.status_code in (200, 403), f"{label(model)}.{field.name}"
                if response.status_code == 200:
                    ids = {int(row["id"]) for row in response.json()["results"]}
                    assert not ids & theirs.get(remote, set()), f"{label(model)}.{field.name} lists {ids}"
