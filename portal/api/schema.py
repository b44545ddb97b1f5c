"""The error answers every operation can give, documented once for all of them (drf-spectacular
postprocessing hook) instead of by hand on each view.  They are the ones the API really gives:

- 401 without valid credentials, 403 without the permission (or with a read-only token);
- 404 when the object in the path does not exist or may not be seen;
- 400 when a query parameter, the body, or the object's state refuses the request;
- 409 when a change conflicts with an existing object; 413 for a body over the size limit;
  415 for a body in a media type the API does not parse;
- 503 while the database or Redis (the task queue) cannot be reached (portal/outage.py), with a
  Retry-After header.
"""

ERROR = {
    "type": "object",
    "description": "`detail` names the problem, or each refused field maps to its messages.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}

MESSAGES = {
    "400": "The request was refused: a parameter, the body, or the object's state (the answer names which).",
    "401": "No valid credentials (a Bearer token or a session).",
    "403": "Not allowed: missing permission, or a read-only token for a change.",
    "404": "No such object, or not one the caller may see.",
    "409": "Conflicts with an existing object.",
    "413": "The request body is over the size limit (PORTAL_MAX_REQUEST_BYTES).",
    "415": "The request body is in a media type the API does not accept.",
    "503": "The database or the task queue (Redis) is briefly unreachable; retry after the Retry-After seconds.",
}

WRITES = {"post", "put", "patch", "delete"}


def error_codes(path, method, operation):
    codes = {"401", "403", "503"}
    has_body = "requestBody" in operation
    has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    if "{" in path:
        codes.add("404")
    if has_body or has_query or method in WRITES:
        codes.add("400")
    if method in WRITES:
        codes.update({"409", "413", "415"})
    return codes


def link_created_objects(result, generator, request, public):
    """OpenAPI links from each ``POST /things/`` (201, with an ``id``) to the operations on
    ``/things/{id}/...``: clients (and schemathesis' stateful phase) can follow what a call made."""
    paths = result.get("paths", {})
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None or "{" in path:
            continue
        for target, target_operations in paths.items():
            if not target.startswith(f"{path}{{id}}/"):
                continue
            for method, operation in target_operations.items():
                if method in {"get", "post", "put", "patch", "delete"} and "operationId" in operation:
                    created.setdefault("links", {})[operation["operationId"]] = {
                        "operationId": operation["operationId"], "parameters": {"id": "$response.body#/id"},
                    }
    return result


def document_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    reference = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code in sorted(error_codes(path, method, operation)):
                responses.setdefault(code, {"description": MESSAGES[code], "content": {"application/json": {"schema": reference}}})
    return result
