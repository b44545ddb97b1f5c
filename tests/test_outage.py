"""handler500 (portal/outage.py): an unreachable database or Redis is a 503 naming it, as JSON
under /api/ and as a page elsewhere; any other error stays a 500, JSON under /api/.  The real
outages (PostgreSQL restarted, redis-server killed) are in tests/faults/test_portal_faults.py."""

import pytest
from django.db import OperationalError
from django.test import RequestFactory
from redis.exceptions import ConnectionError as RedisConnectionError

from portal.outage import server_error


def answer(path, exc, **headers):
    request = RequestFactory().get(path, **headers)
    try:
        raise exc
    except Exception:
        return server_error(request)


def test_the_database_unreachable_under_api_is_a_json_503():
    response = answer("/api/v1/clusters/", OperationalError("connection refused"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert b"cannot reach the database" in response.content and response["Content-Type"] == "application/json"


def test_redis_unreachable_on_a_page_is_a_page_naming_it():
    response = answer("/clusters/1/", RedisConnectionError("Error 111 connecting"))
    assert response.status_code == 503 and response["Content-Type"].startswith("text/html")
    assert b"cannot reach Redis" in response.content and b"Traceback" not in response.content


def test_an_outage_the_error_came_from_counts_too():
    def wrapped():
        try:
            raise OperationalError("server closed the connection unexpectedly")
        except OperationalError as exc:
            raise RuntimeError("while rendering") from exc

    request = RequestFactory().get("/api/v1/projects/")
    try:
        wrapped()
    except RuntimeError:
        response = server_error(request)
    assert response.status_code == 503


@pytest.mark.parametrize("path, json", [("/api/v1/clusters/", True), ("/clusters/", False)])
def test_any_other_error_is_still_a_500(path, json):
    response = answer(path, ValueError("a bug"))
    assert response.status_code == 500
    assert (response["Content-Type"] == "application/json") is json
