"""The OpenAPI 3 document of the API, written from the table of operations (lapins.api.schemas)."""
from __future__ import annotations

from functools import cache

from lapins.api.schemas import ERROR, ERROR_DESCRIPTIONS, ID, OPERATIONS, Operation

PREFIX = "/api/v1"
JSON = "application/json"


def _json(schema: dict) -> dict:
    return {JSON: {"schema": schema}}


def _parameters(operation: Operation) -> list[dict]:
    parameters = [{"name": name, "in": "path", "required": True, "schema": ID,
                   "description": "Identifiant de l'objet."} for name in operation.path_parameters]
    for name, declaration in operation.query.items():
        parameters.append({"name": name, "in": "query", "required": declaration["required"],
                           "schema": declaration["schema"], "description": declaration["description"]})
    return parameters


def _operation(operation: Operation) -> dict:
    status, description, schema = operation.success
    responses = {str(status): {"description": description} | ({"content": _json(schema)} if schema else {})}
    for error in operation.all_errors:
        responses[str(error)] = {"description": ERROR_DESCRIPTIONS[error], "content": _json(ERROR)}
    document = {"operationId": operation.operation_id, "summary": operation.summary, "tags": [operation.tag],
                "parameters": _parameters(operation), "responses": responses}
    if operation.body is not None:
        document["requestBody"] = {"required": True, "content": _json(operation.body)}
    return document


@cache
def document() -> dict:
    paths: dict[str, dict] = {}
    for operation in OPERATIONS:
        paths.setdefault(PREFIX + operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "API Lapins",
            "version": "1.0.0",
            "description": (
                "Rendez-vous et rappels des services de PMI. Chaque requête porte le jeton d'un agent "
                "(« Authorization: Bearer <jeton> ») et a exactement les droits de cet agent dans l'agenda. "
                "Les instants sont en UTC (suffixe « Z ») ; l'heure locale du territoire est donnée à côté."
            ),
        },
        "paths": paths,
        "components": {"securitySchemes": {"jeton": {"type": "http", "scheme": "bearer"}}},
        "security": [{"jeton": []}],
    }


def curl_example(operation: Operation) -> str:
    """A curl line for the docs page, with a body made of each required field's example."""
    path = PREFIX + operation.path
    for name in operation.path_parameters:
        path = path.replace("{" + name + "}", "42")
    required = [name for name, declaration in operation.query.items() if declaration["required"]]
    if required:
        path += "?" + "&".join(f"{name}=1" for name in required)
    line = f"curl -X {operation.method} -H 'Authorization: Bearer lap_…' 'https://lapins.example.fr{path}'"
    if operation.body is not None:
        import json

        example = {name: _example(operation.body["properties"][name]) for name in operation.body["required"]}
        line += f" \\\n  -H 'Content-Type: application/json' -d '{json.dumps(example, ensure_ascii=False)}'"
    return line


def _example(schema: dict):
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    if schema["type"] == "array":
        return [_example(schema["items"])]
    return {"integer": 1, "string": "…", "boolean": True}.get(schema["type"])
