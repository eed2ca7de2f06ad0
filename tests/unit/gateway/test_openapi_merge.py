"""Merging the services' OpenAPI documents into one."""

from __future__ import annotations

from typing import Any

from bazaar.gateway.openapi import merge_openapi


def document(service: str, schemas: dict[str, Any], ref: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": {
            f"/api/{service}/things": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": f"#/components/schemas/{ref}"}
                                }
                            },
                        }
                    }
                }
            }
        },
        "components": {"schemas": schemas},
    }


SHARED = {"type": "object", "properties": {"detail": {"type": "array"}}}


def test_clashing_schema_names_are_prefixed_and_references_follow() -> None:
    merged = merge_openapi(
        {
            "catalog": document(
                "catalog", {"Item": {"properties": {"title": {}}}, "Error": SHARED}, "Item"
            ),
            "orders": document(
                "orders",
                {
                    "Item": {"properties": {"quantity": {}}},
                    "Order": {"properties": {"items": {"$ref": "#/components/schemas/Item"}}},
                    "Error": SHARED,
                },
                "Order",
            ),
        }
    )
    schemas = merged["components"]["schemas"]
    assert set(schemas) == {"catalog.Item", "orders.Item", "Order", "Error"}
    assert schemas["Order"]["properties"]["items"]["$ref"] == "#/components/schemas/orders.Item"
    catalog_get = merged["paths"]["/api/catalog/things"]["get"]
    schema = catalog_get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"] == "#/components/schemas/catalog.Item"
    assert catalog_get["tags"] == ["catalog"]
    assert merged["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_inputs_are_not_changed() -> None:
    catalog = document("catalog", {"Item": {"a": 1}}, "Item")
    orders = document("orders", {"Item": {"b": 2}}, "Item")
    merge_openapi({"catalog": catalog, "orders": orders})
    assert "Item" in catalog["components"]["schemas"]
    ref = catalog["paths"]["/api/catalog/things"]["get"]["responses"]["200"]
    assert ref["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Item"


def test_missing_services_are_named() -> None:
    merged = merge_openapi({}, unavailable=["payments", "auctions"])
    assert merged["paths"] == {}
    assert merged["x-bazaar-unavailable"] == ["auctions", "payments"]
