"""What kind of Dockyard process this is, for the settings that differ between kinds.

config.asgi marks the web process before Django loads its settings. A module attribute, not an
environment variable: the processes that the web process, or a test that imports config.asgi,
starts (a Celery worker that forks) must not inherit it.
"""

web = False
