"""Adapters to the world outside Dockyard, and the machinery every app shares.

One module per outside system (the Docker engine, git, the registry, HAProxy, the apps'
health endpoints, the forges' APIs, chat webhooks, the broker, the channel layer), each with
its own error type and small value objects; the task dispatch table; the durable-job kernel.
Nothing here imports a domain app (import-linter keeps it so).
"""
