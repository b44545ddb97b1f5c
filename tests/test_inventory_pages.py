"""The inventory pages (issue 13): a namespace, workload, pod, node and Service each have a page with
breadcrumbs, related objects and events; every name in a table links there; each live row comes
from one template, the same on page load and from /rows/<kind>/<pk>/; another tenant gets 404."""

import re

import pytest
from django.test import Client
from django.utils import timezone

from clusters.models import ClusterEvent, Node, Pod, Service, Workload


@pytest.fixture
def inventory(world):
    ns, cluster = world.namespace, world.cluster
    node = Node.objects.create(cluster=cluster, uid="n-1", name="worker-1", ready=True, cpu_allocatable_m=4000,
                               conditions=[{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}])
    web = Workload.objects.create(cluster=cluster, namespace=ns, uid="w-1", name="web", kind="deployment", desired_replicas=5,
                                  ready_replicas=3, selector={"matchLabels": {"app": "web"}}, images=["nginx:1.27"])
    pod = Pod.objects.create(cluster=cluster, namespace=ns, uid="p-1", name="web-7d9f-abcde", workload=web, node=node, node_name="worker-1",
                             phase="Running", ready=True, labels={"app": "web", "pod-template-hash": "7d9f"}, owner_kind="ReplicaSet",
                             owner_name="web-7d9f")
    other = Pod.objects.create(cluster=cluster, namespace=ns, uid="p-2", name="batch-1", phase="Pending", labels={"app": "batch"})
    service = Service.objects.create(cluster=cluster, namespace=ns, uid="s-1", name="web", type="ClusterIP", cluster_ip="10.0.0.9",
                                     selector={"app": "web"}, ports=[{"port": 80, "targetPort": 8080, "protocol": "TCP"}])
    now = timezone.now()
    ClusterEvent.objects.create(cluster=cluster, namespace=ns, uid="e-1", name="web-7d9f.1", type="Warning", reason="FailedCreate",
                                involved_kind="ReplicaSet", involved_name="web-7d9f", last_seen=now,
                                message="pods \"web-7d9f-zz\" is forbidden: exceeded quota: corral-quota, requested: pods=1, used: pods=3, limited: pods=3")
    ClusterEvent.objects.create(cluster=cluster, namespace=ns, uid="e-2", name="web-7d9f-abcde.1", type="Normal", reason="Pulled",
                                involved_kind="Pod", involved_name=pod.name, last_seen=now, message="image pulled")
    ClusterEvent.objects.create(cluster=cluster, namespace=ns, uid="e-3", name="batch-1.1", type="Normal", reason="Scheduled",
                                involved_kind="Pod", involved_name=other.name, last_seen=now, message="assigned")
    world.node, world.web, world.pod, world.other_pod, world.service = node, web, pod, other, service
    return world


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def crumbs(page):
    nav = re.search(r'<nav class="crumbs".*?</nav>', page, re.S).group(0)
    return re.findall(r"<li>(?:<a href=\"([^\"]+)\">)?(?:<span aria-current=\"page\">)?([^<]+)", nav)


def test_pod_page_shows_where_it_lies_its_owner_node_services_and_events(inventory):
    w = inventory
    page = client_for(w.owner).get(f"/pods/{w.pod.pk}/").content.decode()
    assert [label for _, label in crumbs(page)] == ["Clusters", "alpha", "web-prod", "web", w.pod.name]
    assert [url for url, _ in crumbs(page)][:4] == ["/", f"/clusters/{w.cluster.pk}/", f"/namespaces/{w.namespace.pk}/", f"/workloads/{w.web.pk}/"]
    assert f'href="/nodes/{w.node.pk}/"' in page and f'href="/services/{w.service.pk}/"' in page
    assert "Pulled" in page and "image pulled" in page and "Scheduled" not in page  # its own events only
    assert f"/pods/{w.pod.pk}/logs/" in page and "app=web" in page


def test_workload_page_says_why_it_is_below_its_desired_count(inventory):
    w = inventory
    page = client_for(w.owner).get(f"/workloads/{w.web.pk}/").content.decode()
    assert "3 / 5" in page
    assert "the namespace&#x27;s quota “corral-quota” is used up" in page or "the namespace's quota “corral-quota” is used up" in page
    assert 'id="workload-pods"' in page and f'id="pod-{w.pod.uid}"' in page and f'id="pod-{w.other_pod.uid}"' not in page
    assert "FailedCreate" in page and f'href="/services/{w.service.pk}/"' in page
    assert 'data-kind="workload"' in page or "No usage metrics" in page


def test_namespace_node_and_service_pages(inventory):
    w = inventory
    owner = client_for(w.owner)
    page = owner.get(f"/namespaces/{w.namespace.pk}/").content.decode()
    assert f'href="/projects/{w.project.pk}/"' in page
    for name in (w.web.name, w.pod.name, w.other_pod.name):
        assert name in page
    page = owner.get(f"/nodes/{w.node.pk}/").content.decode()
    assert "KubeletReady" in page and f'id="pod-{w.pod.uid}"' in page and f'id="pod-{w.other_pod.uid}"' not in page
    assert [label for _, label in crumbs(page)] == ["Clusters", "alpha", "Nodes", "worker-1"]
    page = owner.get(f"/services/{w.service.pk}/").content.decode()
    assert "80→8080/TCP" in page and "10.0.0.9" in page
    assert f'id="pod-{w.pod.uid}"' in page and f'id="pod-{w.other_pod.uid}"' not in page  # selector-matched pods


def test_every_name_in_the_cluster_page_and_search_links_to_its_page(inventory):
    w = inventory
    page = client_for(w.owner).get(f"/clusters/{w.cluster.pk}/").content.decode()
    for url in (f"/nodes/{w.node.pk}/", f"/namespaces/{w.namespace.pk}/", f"/workloads/{w.web.pk}/", f"/pods/{w.pod.pk}/",
                f"/pods/{w.other_pod.pk}/", f"/projects/{w.project.pk}/"):
        assert f'href="{url}"' in page, url
    page = client_for(w.owner).get("/search/", {"q": "web"}).content.decode()
    assert f'href="/pods/{w.pod.pk}/"' in page and f'href="/workloads/{w.web.pk}/"' in page
    assert f'href="/nodes/{w.node.pk}/"' in page  # the pod's node, for one who may see nodes
    member_page = client_for(w.member).get("/search/", {"q": "web"}).content.decode()
    assert f'href="/pods/{w.pod.pk}/"' in member_page and f'href="/nodes/{w.node.pk}/"' not in member_page
    page = client_for(w.owner).get("/search/", {"q": "worker"}).content.decode()
    assert f'href="/nodes/{w.node.pk}/"' in page
    page = client_for(w.owner).get(f"/projects/{w.project.pk}/").content.decode()
    assert f'href="/namespaces/{w.namespace.pk}/"' in page


def test_a_project_member_sees_their_pages_but_not_nodes_and_is_told_why(inventory):
    w = inventory
    member = client_for(w.member)
    assert member.get(f"/pods/{w.pod.pk}/").status_code == 200
    assert member.get(f"/namespaces/{w.namespace.pk}/").status_code == 200
    assert member.get(f"/nodes/{w.node.pk}/").status_code == 404
    page = member.get(f"/clusters/{w.cluster.pk}/").content.decode()
    assert "No nodes known yet." not in page and "Nodes are visible to the cluster's owners and members" in page
    pod_page = member.get(f"/pods/{w.pod.pk}/").content.decode()
    assert f'href="/nodes/{w.node.pk}/"' not in pod_page and "worker-1" in pod_page  # the name, not a link
    # The cluster's member (who may see nodes) sees them; with no nodes at all, everyone reads "No nodes known yet."
    assert "worker-1" in client_for(w.viewer).get(f"/clusters/{w.cluster.pk}/").content.decode()
    Node.objects.all().delete()
    assert "No nodes known yet." in member.get(f"/clusters/{w.cluster.pk}/").content.decode()


def test_another_tenant_gets_404_on_every_inventory_page_and_row(inventory):
    w = inventory
    urls = [f"/namespaces/{w.namespace.pk}/", f"/workloads/{w.web.pk}/", f"/pods/{w.pod.pk}/", f"/nodes/{w.node.pk}/",
            f"/services/{w.service.pk}/", f"/rows/pod/{w.pod.pk}/", f"/rows/workload/{w.web.pk}/", f"/rows/node/{w.node.pk}/",
            f"/rows/namespace/{w.namespace.pk}/", f"/rows/service/{w.service.pk}/",
            f"/rows/event/{ClusterEvent.objects.get(uid='e-1').pk}/"]
    for user in (w.stranger, w.nobody):
        client = client_for(user)
        for url in urls:
            assert client.get(url).status_code == 404, (user, url)
        # The catch-up list of a table in their neighbour's cluster is empty, whatever the filter says.
        for kind in ("pod", "workload", "node", "namespace", "event", "service"):
            response = client.get(f"/rows/{kind}/", {"cluster": w.cluster.pk})
            assert response.status_code == 200 and response.content.strip() == b"", kind
            response = client.get(f"/rows/{kind}/", {"about": f"pod:{w.pod.pk}", "service": w.service.pk})
            assert response.content.strip() == b"", kind
    assert Client().get(f"/rows/pod/{w.pod.pk}/").status_code == 302  # signed out: to the login page
    assert client_for(w.owner).get("/rows/secret/").status_code == 404


def _row(page, element_id):
    match = re.search(rf'<(tr|li) id="{element_id}".*?</\1>', page, re.S)
    assert match, element_id
    return match.group(0)


def test_a_live_row_is_the_row_the_page_renders(inventory):
    w = inventory
    owner = client_for(w.owner)
    page = owner.get(f"/clusters/{w.cluster.pk}/").content.decode()
    table_filter = re.search(r'<tbody id="pods" data-rows="pod" data-filter="([^"]*)"', page).group(1).replace("&amp;", "&")
    live = owner.get(f"/rows/pod/{w.pod.pk}/?{table_filter}")
    assert live.status_code == 200
    assert live.content.decode().strip() == _row(page, f"pod-{w.pod.uid}")
    assert 'data-method="DELETE"' in live.content.decode()  # the owner's actions, as on the page
    # The member reads the same row without the node link; the read-only viewer without Delete.
    member_row = client_for(w.member).get(f"/rows/pod/{w.pod.pk}/?{table_filter}").content.decode()
    assert 'data-method="DELETE"' in member_row and f"/nodes/{w.node.pk}/" not in member_row
    viewer_row = client_for(w.viewer).get(f"/rows/pod/{w.pod.pk}/?{table_filter}").content.decode()
    assert 'data-method="DELETE"' not in viewer_row
    for kind, obj, element in (("workload", w.web, f"workload-{w.web.uid}"), ("node", w.node, f"node-{w.node.uid}"),
                               ("namespace", w.namespace, f"namespace-{w.namespace.pk}"),
                               ("event", ClusterEvent.objects.get(uid="e-1"), "event-e-1")):
        body = owner.get(f"/rows/{kind}/{obj.pk}/", {"cluster": w.cluster.pk}).content.decode().strip()
        assert body == _row(page, element), kind
    assert "corral-quota" in owner.get(f"/rows/workload/{w.web.pk}/").content.decode()  # the "why" line comes along


def test_a_row_outside_a_tables_filter_is_answered_204(inventory):
    w = inventory
    owner = client_for(w.owner)
    assert owner.get(f"/rows/pod/{w.other_pod.pk}/", {"workload": w.web.pk}).status_code == 204
    assert owner.get(f"/rows/pod/{w.pod.pk}/", {"workload": w.web.pk}).status_code == 200
    assert owner.get(f"/rows/pod/{w.other_pod.pk}/", {"service": w.service.pk}).status_code == 204
    assert owner.get(f"/rows/pod/{w.pod.pk}/", {"namespace": "elsewhere"}).status_code == 204
    assert owner.get(f"/rows/pod/{w.pod.pk}/", {"cluster": "x"}).status_code == 204
    assert owner.get(f"/rows/pod/{w.pod.pk}/", {"q": "nginx\x00"}).status_code in (200, 204)
    e3 = ClusterEvent.objects.get(uid="e-3")
    assert owner.get(f"/rows/event/{e3.pk}/", {"about": f"pod:{w.pod.pk}"}).status_code == 204
    assert owner.get(f"/rows/event/{e3.pk}/", {"about": f"pod:{w.other_pod.pk}"}).status_code == 200
    assert owner.get(f"/rows/event/{e3.pk}/", {"about": "pod:nonsense"}).status_code == 204
    # A workload's events include its ReplicaSet's (the quota failure) and its pods'.
    listed = owner.get("/rows/event/", {"about": f"workload:{w.web.pk}"}).content.decode()
    assert "event-e-1" in listed and "event-e-2" in listed and "event-e-3" not in listed
