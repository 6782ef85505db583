"""How the image stack, the test container and publishing say they did not work out."""


class BuildFailure(Exception):
    """A reason the user can act on: a Dockerfile that does not build, a failing test, a push
    the registry refused. The message says which and why."""


class BuildCancelled(Exception):
    """The work stopped early because its run was cancelled."""
