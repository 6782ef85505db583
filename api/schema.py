"""The OpenAPI schema's finishing touch: every operation documents its error answers."""

from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/Error"}
# Any operation may answer these; writes may also refuse (409) or see a reused key (422).
READ_ERRORS = {
    "400": "bad input: the message names what was wrong",
    "401": "no or a bad token",
    "403": "not allowed",
    "404": "no such thing, or no such page",
}
WRITE_ERRORS = {**READ_ERRORS, "409": "refused for now", "422": "Idempotency-Key reused"}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: add the Error answers an operation lacks."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            errors = READ_ERRORS if method == "get" else WRITE_ERRORS
            responses = operation.setdefault("responses", {})
            for code, description in errors.items():
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return result
