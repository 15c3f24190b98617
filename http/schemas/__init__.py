"""Request and response bodies per route family (pydantic; also the OpenAPI document).

``core`` holds what every family shares (``Strict``, the process record and receipt).
"""
