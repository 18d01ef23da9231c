"""The Prefect REST API boundary: payload models, typed errors and the httpx client.

Deliberately empty of imports, so that pure modules can use ``prefect_api.models``
without pulling in httpx.
"""
