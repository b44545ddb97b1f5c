"""Kubeconfigs: from the API, the portal and the management command; each with a token of its own
(kind kubeconfig, listed and revocable with the others), naming only the clusters one may see."""

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from portal.models import ApiToken, AuditEvent


def test_the_api_gives_a_kubeconfig_with_a_token_of_its_own(world, settings):
    settings.EXTERNAL_URL = "https://corral.example.com"
    response = world.client(world.member).get(f"/api/v1/clusters/{world.cluster.pk}/kubeconfig/", {"expires_in_days": "7"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{world.cluster.slug}.kubeconfig"'
    config = response.json()
    assert config["current-context"] == world.cluster.slug
    assert config["clusters"] == [{"name": world.cluster.slug, "cluster": {"server": f"https://corral.example.com/k8s/clusters/{world.cluster.pk}"}}]
    secret = config["users"][0]["user"]["token"]
    token = ApiToken.authenticate(secret)
    assert token.user == world.member and token.kind == "kubeconfig" and not token.read_only
    assert 6 <= (token.expires - token.created).days <= 7
    assert AuditEvent.objects.filter(object_type="portal.apitoken", object_id=str(token.pk), action="create").exists()
    listed = world.client(world.member).get("/api/v1/tokens/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert any(row["id"] == token.pk and row["kind"] == "kubeconfig" for row in rows)


@pytest.mark.parametrize("days", ["0", "91", "seven", "-1", "1.5"])
def test_a_token_lifetime_out_of_range_is_a_400_naming_it(world, days):
    response = world.client(world.member).get("/api/v1/kubeconfig/", {"expires_in_days": days})
    assert response.status_code == 400 and "expires_in_days" in response.json()
    assert not ApiToken.objects.filter(kind="kubeconfig").exists()


def test_a_read_only_caller_gets_a_read_only_kubeconfig(world):
    config = world.client(world.member, read_only=True).get("/api/v1/kubeconfig/").json()
    assert ApiToken.authenticate(config["users"][0]["user"]["token"]).read_only


def test_the_portal_downloads_kubeconfigs_and_lists_their_tokens(world):
    client = Client()
    client.force_login(world.member)
    response = client.post("/kubeconfig/")
    assert response.status_code == 200 and response["Content-Type"] == "application/yaml"
    assert [c["name"] for c in yaml.safe_load(response.content)["clusters"]] == [world.cluster.slug]
    assert client.post(f"/clusters/{world.other_cluster.pk}/kubeconfig/").status_code == 404
    assert client.get(f"/clusters/{world.cluster.pk}/kubeconfig/").status_code == 405  # a GET makes no token
    page = client.get("/account/tokens/").content.decode()
    assert "kubeconfig (kubectl through Corral only)" in page and "kubeconfig: alpha" in page


def test_the_management_command_prints_a_kubeconfig(world):
    out = io.StringIO()
    call_command("kubeconfig", world.stranger.username, "--server", "https://corral.example.com", stdout=out)
    config = yaml.safe_load(out.getvalue())
    assert [c["name"] for c in config["clusters"]] == [world.other_cluster.slug]
    assert config["clusters"][0]["cluster"]["server"] == f"https://corral.example.com/k8s/clusters/{world.other_cluster.pk}"
    with pytest.raises(CommandError, match="may not see"):
        call_command("kubeconfig", world.stranger.username, "--cluster", str(world.cluster.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="no active user"):
        call_command("kubeconfig", "nobody-here", stdout=io.StringIO())
