"""Kubernetes boundary: the only package that imports kubernetes_asyncio."""
