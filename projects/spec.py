"""`dockyard.yml`: a repository's pipeline, parsed into frozen dataclasses.

Pure: takes the file's text, no I/O, no ORM. The YAML is composed into a node tree (SafeLoader)
and walked by hand rather than loaded into dicts, so that every error names the line and the
dotted key path (`dockyard.yml:7: images.app.from: unknown image 'bse'`), and so that duplicate
keys, which PyYAML would silently collapse, are refused.
"""

import posixpath
import re
import shlex
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

SPEC_FILE = "dockyard.yml"

DEFAULT_TEST_TIMEOUT = 600
MAX_TEST_TIMEOUT = 24 * 60 * 60
DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024
# Docker refuses a memory limit below 6 MiB; saying so here beats a failed run later.
MIN_MEMORY_BYTES = 6 * 1024 * 1024
DEFAULT_CPUS = 1.0
MAX_CPUS = 64.0
DEFAULT_PIDS = 256
MIN_PIDS = 16
DEFAULT_TAGS = ("{sha}", "{branch}", "{tag}")
TAG_PLACEHOLDERS = ("sha", "short_sha", "branch", "tag", "run")

IMAGE_KEYS = ("dockerfile", "context", "from", "args")
TEST_KEYS = (
    "image",
    "command",
    "timeout",
    "env",
    "secrets",
    "memory",
    "cpus",
    "pids",
    "user",
    "network",
    "steps",
    "reports",
    "cache",
)
STEP_KEYS = ("name", "command", "image", "env", "timeout")
STEP_GROUP_KEYS = ("parallel", "steps")
SERVICE_KEYS = (
    "image",
    "env",
    "command",
    "ready",
    "ready_timeout",
    "user",
    "memory",
    "cpus",
    "pids",
)
DEFAULT_READY_TIMEOUT = 60
MAX_READY_TIMEOUT = 3600
# The one step of the one-step form (`test.command`).
SINGLE_STEP_NAME = "test"
PUBLISH_KEYS = ("image", "repository", "tags")
DEFAULT_RELEASE_TIMEOUT = 600
DEPLOY_KEYS = (
    "port",
    "health",
    "environments",
    "release_command",
    "release_timeout",
    "watch",
    "replicas",
)
ENVIRONMENT_KEYS = ("auto", "branches", "after", "watch")
WATCH_KEYS = ("seconds", "max_error_rate", "min_requests")
MAX_WATCH_SECONDS = 24 * 3600
MAX_REPLICAS = 16
TOP_LEVEL_KEYS = ("images", "services", "test", "publish", "deploy")

PROJECT_PREFIX = "project:"
# Below a project's namespace, where the build pushes what it built before it is published
# (builds.candidates); not a place to publish.
CANDIDATES_FOLDER = "candidates"

_IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_PROJECT_SLUG = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# A service's name is also its host name inside the test's network namespace.
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# A reference to an image in a registry: repository, then a tag, a digest or both.
_IMAGE_REFERENCE = re.compile(
    r"^(?P<repository>[^@:\s]+(?::\d+)?(?:/[^@:\s]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
# Where a test's cache may not go: the system's own trees.
_CACHE_REFUSED_ROOTS = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/usr", "/lib")
# What `docker run --user` takes: a name or uid, optionally ':' a group or gid.
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
_MEMORY = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[kmg]?)b?$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Docker's reference grammar (distribution/reference), lowercase host included: we push to it.
_DOMAIN_COMPONENT = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::\d+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"
)
MAX_REPOSITORY_LENGTH = 255
_TAG_LITERAL = re.compile(r"^[A-Za-z0-9_.-]*$")
_TAG_PIECES = re.compile(r"(\{[^{}]*\})")

_YAML_TAG = "tag:yaml.org,2002:"
_STR = _YAML_TAG + "str"
_INT = _YAML_TAG + "int"
_FLOAT = _YAML_TAG + "float"
_BOOL = _YAML_TAG + "bool"
_NULL = _YAML_TAG + "null"
# PyYAML reads yes/no/on/off as booleans (YAML 1.1); we take only true/false, so that a
# setting means what it plainly says rather than what an old YAML version guessed.
_TRUE_FALSE = {"true": True, "false": False}


class SpecError(ValueError):
    """A `dockyard.yml` Dockyard refuses, with the line and key path of the problem."""

    def __init__(
        self, message: str, *, line: int | None = None, key: str = "", filename: str = SPEC_FILE
    ) -> None:
        self.message = message
        self.line = line
        self.key = key
        self.filename = filename
        super().__init__(self._located_message())

    def __str__(self) -> str:
        return self._located_message()

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only arguments would be lost when pickled (e.g. as a Celery task result).
        return (_rebuild_spec_error, (self.message, self.line, self.key, self.filename))

    def _located_message(self) -> str:
        place = self.filename if self.line is None else f"{self.filename}:{self.line}"
        key = f"{self.key}: " if self.key else ""
        return f"{place}: {key}{self.message}"


def _rebuild_spec_error(message: str, line: int | None, key: str, filename: str) -> SpecError:
    return SpecError(message, line=line, key=key, filename=filename)


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str
    context: str
    from_image: str | None
    from_project: str | None
    args: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TestSpec:
    # Tells pytest this is not a test case, in every test module that imports it.
    __test__ = False

    image: str
    command: tuple[str, ...]
    timeout: int
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]
    memory_bytes: int
    cpus: float
    pids: int
    user: str | None
    network: bool
    # The several-steps form; empty in the one-step form (`command`).
    steps: tuple["StepSpec", ...] = ()
    # JUnit XML files the steps leave behind (globs, relative to the image's working folder).
    reports: tuple[str, ...] = ()
    # Folders kept between runs of a project's branch (a volume per folder).
    cache: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepSpec:
    """One step of a test: its command in a container of its own, after (or beside) others."""

    name: str
    command: tuple[str, ...]
    image: str
    env: tuple[tuple[str, str], ...]
    timeout: int
    # Steps of one group run side by side; groups run in order.
    group: int


@dataclass(frozen=True)
class ServiceSpec:
    """A container the test talks to (a database, a cache), in the test's own namespace."""

    name: str
    # A registry reference, or the name of an image of the stack.
    image: str
    env: tuple[tuple[str, str], ...]
    command: tuple[str, ...] | None
    ready: tuple[str, ...] | None
    ready_timeout: int
    user: str | None
    memory_bytes: int
    cpus: float
    pids: int


def steps_of(test: TestSpec) -> tuple[StepSpec, ...]:
    """The steps a test runs: its `steps`, or its one `command` as a step named "test"."""
    if test.steps:
        return test.steps
    return (
        StepSpec(
            name=SINGLE_STEP_NAME,
            command=test.command,
            image=test.image,
            env=(),
            timeout=test.timeout,
            group=0,
        ),
    )


@dataclass(frozen=True)
class PublishSpec:
    image: str
    repository: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class WatchSpec:
    """After a deployment, how long its release's error rate is watched, and the rate (5xx
    among its requests, with at least `min_requests` of them) that rolls it back."""

    seconds: int = 120
    max_error_rate: float = 0.05
    min_requests: int = 50

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "max_error_rate": self.max_error_rate,
            "min_requests": self.min_requests,
        }


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    auto: bool
    branches: tuple[str, ...]
    after: str | None
    # None: the deploy section's watch; False: not watched here.
    watch: WatchSpec | bool | None = None


@dataclass(frozen=True)
class DeploySpec:
    port: int
    health: str
    environments: tuple[EnvironmentSpec, ...]
    # Run once per deployment from the new image on one host, before any slot switches
    # (migrations, say); its failure stops the deployment with nothing switched.
    release_command: tuple[str, ...] = ()
    release_timeout: int = DEFAULT_RELEASE_TIMEOUT
    # Every environment's, unless it has a watch of its own (or `watch: false`).
    watch: WatchSpec | None = None
    # Containers of the live release on each host, behind the host's HAProxy.
    replicas: int = 1


def watch_of_environment(deploy_config: dict[str, Any], environment: str) -> WatchSpec | None:
    """The watch a release's stored deploy section sets for `environment` (None: none). Pure."""
    chosen = deploy_config.get("watch")
    for entry in deploy_config.get("environments") or ():
        if entry.get("name") == environment and entry.get("watch") is not None:
            chosen = entry["watch"]
    if not chosen:
        return None
    return WatchSpec(
        seconds=int(chosen["seconds"]),
        max_error_rate=float(chosen["max_error_rate"]),
        min_requests=int(chosen["min_requests"]),
    )


@dataclass(frozen=True)
class PipelineSpec:
    images: tuple[ImageSpec, ...]
    test: TestSpec | None
    publish: PublishSpec
    deploy: DeploySpec | None
    services: tuple[ServiceSpec, ...] = ()

    def image(self, name: str) -> ImageSpec:
        """The image called `name`; KeyError if the pipeline defines none."""
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)


@dataclass(frozen=True)
class SpecPolicy:
    """What this installation lets one project's `dockyard.yml` ask for; operators decide it.

    A file asking for more fails at config, its error naming the setting that refused it.
    """

    max_memory_bytes: int
    max_pids: int
    max_cpus: float
    max_timeout: int
    # None when the project's tests may have the host's network, else why they may not.
    network_refusal: str | None
    # The project publishes under "<registry>/<slug>" and below it, and into these repositories
    # an operator granted it; never into another project's namespace.
    publish_namespace: str
    publish_grants: tuple[str, ...] = ()


def parse_spec(
    text: str, *, filename: str = SPEC_FILE, policy: SpecPolicy | None = None
) -> PipelineSpec:
    """Parse the text of a `dockyard.yml`; SpecError names the line and key of any problem.

    With a policy, what the file asks for beyond it is refused the same way.
    """
    try:
        return _pipeline(_compose(text), policy)
    except SpecError as error:
        if filename == SPEC_FILE:
            raise
        raise SpecError(error.message, line=error.line, key=error.key, filename=filename) from None


def default_spec(
    *, test_command: tuple[str, ...] = (), test_timeout: int = DEFAULT_TEST_TIMEOUT
) -> PipelineSpec:
    """The pipeline of a repository without `dockyard.yml`: build ./Dockerfile, test, publish."""
    image = ImageSpec(
        name="app",
        dockerfile="Dockerfile",
        context=".",
        from_image=None,
        from_project=None,
        args=(),
    )
    test = None
    if test_command:
        test = TestSpec(
            image=image.name,
            command=test_command,
            timeout=test_timeout,
            env=(),
            secrets=(),
            memory_bytes=DEFAULT_MEMORY_BYTES,
            cpus=DEFAULT_CPUS,
            pids=DEFAULT_PIDS,
            user=None,
            network=False,
        )
    publish = PublishSpec(image=image.name, repository=None, tags=DEFAULT_TAGS)
    return PipelineSpec(images=(image,), test=test, publish=publish, deploy=None)


# The dict form is stored as JSON (e.g. in a jsonb column, which does not keep key order), so
# everything whose order matters (images, args, env, environments) is a list, never an object.


def spec_to_dict(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as plain JSON-serialisable data; `spec_from_dict` reads it back."""
    return {
        "images": [
            {
                "name": image.name,
                "dockerfile": image.dockerfile,
                "context": image.context,
                "from_image": image.from_image,
                "from_project": image.from_project,
                "args": [[name, value] for name, value in image.args],
            }
            for image in spec.images
        ],
        "test": None if spec.test is None else _test_to_dict(spec.test),
        "publish": {
            "image": spec.publish.image,
            "repository": spec.publish.repository,
            "tags": list(spec.publish.tags),
        },
        "deploy": None if spec.deploy is None else _deploy_to_dict(spec.deploy),
        "services": [_service_to_dict(service) for service in spec.services],
    }


def spec_from_dict(data: dict[str, Any]) -> PipelineSpec:
    """The spec that `spec_to_dict` turned into `data`."""
    images = tuple(
        ImageSpec(
            name=image["name"],
            dockerfile=image["dockerfile"],
            context=image["context"],
            from_image=image["from_image"],
            from_project=image["from_project"],
            args=_pairs(image["args"]),
        )
        for image in data["images"]
    )
    publish = data["publish"]
    return PipelineSpec(
        images=images,
        test=None if data["test"] is None else _test_from_dict(data["test"]),
        publish=PublishSpec(
            image=publish["image"], repository=publish["repository"], tags=tuple(publish["tags"])
        ),
        deploy=None if data["deploy"] is None else _deploy_from_dict(data["deploy"]),
        # Runs recorded before services existed have none.
        services=tuple(_service_from_dict(item) for item in data.get("services", [])),
    )


def _test_to_dict(test: TestSpec) -> dict[str, Any]:
    return {
        "image": test.image,
        "command": list(test.command),
        "timeout": test.timeout,
        "env": [[name, value] for name, value in test.env],
        "secrets": list(test.secrets),
        "memory_bytes": test.memory_bytes,
        "cpus": test.cpus,
        "pids": test.pids,
        "user": test.user,
        "network": test.network,
        "steps": [
            {
                "name": step.name,
                "command": list(step.command),
                "image": step.image,
                "env": [[name, value] for name, value in step.env],
                "timeout": step.timeout,
                "group": step.group,
            }
            for step in test.steps
        ],
        "reports": list(test.reports),
        "cache": list(test.cache),
    }


def _test_from_dict(data: dict[str, Any]) -> TestSpec:
    return TestSpec(
        image=data["image"],
        command=tuple(data["command"]),
        timeout=data["timeout"],
        env=_pairs(data["env"]),
        secrets=tuple(data["secrets"]),
        memory_bytes=data["memory_bytes"],
        # JSON writes 1.0 as 1.0, but a hand-written or re-encoded 1 must still compare equal.
        cpus=float(data["cpus"]),
        pids=data["pids"],
        user=data["user"],
        network=data["network"],
        # Runs recorded before steps, reports and caches existed have none.
        steps=tuple(
            StepSpec(
                name=step["name"],
                command=tuple(step["command"]),
                image=step["image"],
                env=_pairs(step["env"]),
                timeout=step["timeout"],
                group=step["group"],
            )
            for step in data.get("steps", [])
        ),
        reports=tuple(data.get("reports", [])),
        cache=tuple(data.get("cache", [])),
    )


def _service_to_dict(service: ServiceSpec) -> dict[str, Any]:
    return {
        "name": service.name,
        "image": service.image,
        "env": [[name, value] for name, value in service.env],
        "command": None if service.command is None else list(service.command),
        "ready": None if service.ready is None else list(service.ready),
        "ready_timeout": service.ready_timeout,
        "user": service.user,
        "memory_bytes": service.memory_bytes,
        "cpus": service.cpus,
        "pids": service.pids,
    }


def _service_from_dict(data: dict[str, Any]) -> ServiceSpec:
    return ServiceSpec(
        name=data["name"],
        image=data["image"],
        env=_pairs(data["env"]),
        command=None if data["command"] is None else tuple(data["command"]),
        ready=None if data["ready"] is None else tuple(data["ready"]),
        ready_timeout=data["ready_timeout"],
        user=data["user"],
        memory_bytes=data["memory_bytes"],
        cpus=float(data["cpus"]),
        pids=data["pids"],
    )


def _deploy_to_dict(deploy: DeploySpec) -> dict[str, Any]:
    return {
        "port": deploy.port,
        "health": deploy.health,
        "release_command": list(deploy.release_command),
        "release_timeout": deploy.release_timeout,
        "watch": deploy.watch.as_dict() if deploy.watch else None,
        "replicas": deploy.replicas,
        "environments": [
            {
                "name": environment.name,
                "auto": environment.auto,
                "branches": list(environment.branches),
                "after": environment.after,
                "watch": (
                    environment.watch.as_dict()
                    if isinstance(environment.watch, WatchSpec)
                    else environment.watch
                ),
            }
            for environment in deploy.environments
        ],
    }


def _deploy_from_dict(data: dict[str, Any]) -> DeploySpec:
    return DeploySpec(
        port=data["port"],
        health=data["health"],
        # Specs stored before the release phase existed have neither.
        release_command=tuple(data.get("release_command") or ()),
        release_timeout=data.get("release_timeout") or DEFAULT_RELEASE_TIMEOUT,
        # Specs stored before watches and replicas existed have neither.
        watch=WatchSpec(**data["watch"]) if data.get("watch") else None,
        replicas=data.get("replicas") or 1,
        environments=tuple(
            EnvironmentSpec(
                name=environment["name"],
                auto=environment["auto"],
                branches=tuple(environment["branches"]),
                after=environment["after"],
                watch=(
                    WatchSpec(**environment["watch"])
                    if isinstance(environment.get("watch"), dict)
                    else environment.get("watch")
                ),
            )
            for environment in data["environments"]
        ),
    )


def _pairs(items: list[list[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in items)


# --- Walking the YAML node tree ---------------------------------------------------------------


@dataclass(frozen=True)
class _Located:
    """A YAML node with where it sits, for error messages: its dotted key path and its line.

    The line is that of the key that introduced the node (or of the list item), so that
    "test.command: required" points at `test:` rather than at whatever follows it.
    """

    node: yaml.Node | None
    key: str
    line: int | None

    def error(self, message: str) -> SpecError:
        return SpecError(message, line=self.line, key=self.key)


def _compose(text: str) -> _Located:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        problem = error.problem or "syntax error"
        message = f"{error.context}: {problem}" if error.context else problem
        mark = error.problem_mark or error.context_mark
        line = None if mark is None else mark.line + 1
        raise SpecError(f"invalid YAML: {message}", line=line) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise SpecError(
            f"invalid YAML: unacceptable character #x{error.character:04x}: {error.reason}",
            line=line,
        ) from None
    # An empty file, or one holding only comments, composes to no node at all.
    return _Located(node=root, key="", line=None if root is None else _line_of(root))


def _line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _entries(located: _Located, allowed: tuple[str, ...] | None = None) -> dict[str, _Located]:
    """The entries of a mapping in file order; a missing or empty mapping has none.

    With `allowed`, any other key is refused, naming the allowed ones.
    """
    node = located.node
    if node is None or _is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise located.error(f"expected a mapping, got {_describe(node)}")
    entries: dict[str, _Located] = {}
    for key_node, value_node in node.value:
        key_line = _line_of(key_node)
        if not isinstance(key_node, yaml.ScalarNode):
            raise SpecError(
                f"expected a name as key, got {_describe(key_node)}", line=key_line, key=located.key
            )
        # The key as written: `on:` or `2024:` are names here, not a boolean or a number.
        name = key_node.value
        key = f"{located.key}.{name}" if located.key else name
        if name in entries:
            first_line = entries[name].line
            raise SpecError(f"duplicate key (first on line {first_line})", line=key_line, key=key)
        if allowed is not None and name not in allowed:
            raise SpecError(f"unknown key (allowed: {', '.join(allowed)})", line=key_line, key=key)
        entries[name] = _Located(node=value_node, key=key, line=key_line)
    return entries


def _required(entries: dict[str, _Located], name: str, parent: _Located) -> _Located:
    if name not in entries:
        key = f"{parent.key}.{name}" if parent.key else name
        raise SpecError("required", line=parent.line, key=key)
    return entries[name]


def _items(located: _Located) -> list[_Located]:
    node = located.node
    if not isinstance(node, yaml.SequenceNode):
        raise located.error(f"expected a list, got {_describe(node)}")
    return [
        _Located(node=item, key=f"{located.key}[{index}]", line=_line_of(item))
        for index, item in enumerate(node.value)
    ]


def _string(located: _Located) -> str:
    node = located.node
    if not (isinstance(node, yaml.ScalarNode) and node.tag == _STR):
        raise located.error(f"expected a string, got {_describe(node)}")
    return str(node.value)


def _non_empty_string(located: _Located) -> str:
    value = _string(located)
    if not value:
        raise located.error("must not be empty")
    return value


def _integer(located: _Located, *, minimum: int, maximum: int | None = None) -> int:
    node = located.node
    # Only the int tag: a YAML `true` is not 1 here, and a quoted "600" is not a number.
    if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT):
        raise located.error(f"expected an integer, got {_describe(node)}")
    value = _int_value(node)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise located.error(f"must be {bounds}, got {value}")
    return value


def _number(located: _Located) -> float:
    node = located.node
    if not (isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT)):
        raise located.error(f"expected a number, got {_describe(node)}")
    if node.tag == _INT:
        return float(_int_value(node))
    return float(yaml.constructor.SafeConstructor().construct_yaml_float(node))


def _int_value(node: yaml.ScalarNode) -> int:
    # PyYAML's own reading of an int-tagged scalar: 1_000, 0x1f and 017 included.
    return int(yaml.constructor.SafeConstructor().construct_yaml_int(node))


def _boolean(located: _Located) -> bool:
    node = located.node
    if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
        value = _TRUE_FALSE.get(node.value.lower())
        if value is not None:
            return value
    raise located.error(f"expected true or false, got {_describe(node)}")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _describe(node: yaml.Node | None) -> str:
    """How an error names what it found instead: 'a list', "'ten'", 'nothing'."""
    if node is None or _is_null(node):
        return "nothing"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _STR:
        return repr(node.value)
    if node.tag.startswith(_YAML_TAG):
        # An unquoted number, boolean or date: shown as written, unquoted.
        return str(node.value)
    return f"{node.tag} {node.value!r}"


# --- Sections ---------------------------------------------------------------------------------


def _pipeline(root: _Located, policy: SpecPolicy | None) -> PipelineSpec:
    if root.node is None:
        raise SpecError("required", key="images")
    sections = _entries(root, TOP_LEVEL_KEYS)
    images = _images(_required(sections, "images", root))
    names = [image.name for image in images]
    test = _test(sections["test"], names, policy) if "test" in sections else None
    # Without a publish section the image is still published, with the default tags.
    publish = _publish(sections.get("publish", _Located(None, "publish", root.line)), names, policy)
    deploy = _deploy(sections["deploy"]) if "deploy" in sections else None
    services = _services(sections["services"], names, policy) if "services" in sections else ()
    if services and test is None:
        raise sections["services"].error("services are started for the test: add a test section")
    if services and test is not None and test.network:
        raise sections["services"].error(
            "services live in the test's own network namespace: they cannot go with "
            "test.network: true"
        )
    return PipelineSpec(images=images, test=test, publish=publish, deploy=deploy, services=services)


def _images(located: _Located) -> tuple[ImageSpec, ...]:
    entries = _entries(located)
    if not entries:
        raise located.error("at least one image is required")
    all_names = list(entries)
    images: list[ImageSpec] = []
    for name, body in entries.items():
        if not _IMAGE_NAME.match(name):
            raise body.error(
                f"image name {name!r} must be 1 to 63 lowercase letters, digits, '_', '.' or '-',"
                " starting with a letter or digit"
            )
        defined_before = [image.name for image in images]
        images.append(_image(name, body, defined_before, all_names))
    return tuple(images)


def _image(name: str, body: _Located, defined_before: list[str], all_names: list[str]) -> ImageSpec:
    fields = _entries(body, IMAGE_KEYS)
    from_image = from_project = None
    if "from" in fields:
        from_image, from_project = _base(fields["from"], name, defined_before, all_names)
    return ImageSpec(
        name=name,
        dockerfile=_path(fields["dockerfile"]) if "dockerfile" in fields else "Dockerfile",
        context=_path(fields["context"]) if "context" in fields else ".",
        from_image=from_image,
        from_project=from_project,
        args=_variables(fields["args"]) if "args" in fields else (),
    )


def _base(
    located: _Located, name: str, defined_before: list[str], all_names: list[str]
) -> tuple[str | None, str | None]:
    """`from:` as (from_image, from_project): exactly one of the two is set."""
    base = _non_empty_string(located)
    if base.startswith(PROJECT_PREFIX):
        slug = base.removeprefix(PROJECT_PREFIX)
        if not _PROJECT_SLUG.match(slug):
            raise located.error(f"{slug!r} is not a project slug (e.g. project:acme-base)")
        return None, slug
    if base == name:
        raise located.error(f"image {name!r} cannot be built from itself")
    if base in defined_before:
        return base, None
    # Images are built in file order, so a base must already be built when its child starts.
    if base in all_names:
        raise located.error(f"image {base!r} is defined after {name!r}; a base comes first")
    raise located.error(f"unknown image {base!r}")


def _path(located: _Located) -> str:
    """A path inside the repository, in POSIX form, normalised ('./docker/' is 'docker')."""
    path = _non_empty_string(located)
    if "\\" in path:
        raise located.error(f"{path!r} contains a backslash; use '/'")
    # A NUL would only fail later, deep in the build, as an error of ours rather than yours.
    if any(ord(character) < 32 for character in path):
        raise located.error(f"{path!r} contains a control character")
    if path.startswith("/"):
        raise located.error(f"{path!r} is absolute; give a path inside the repository")
    # Refused even when it would come back inside (a/../b): the build must not look outside.
    if ".." in path.split("/"):
        raise located.error(f"{path!r} contains '..'; give a path inside the repository")
    return posixpath.normpath(path)


def _variables(located: _Located) -> tuple[tuple[str, str], ...]:
    """Build args or environment variables: NAME to a scalar, as strings, in file order."""
    variables: list[tuple[str, str]] = []
    for name, value in _entries(located).items():
        if not _VARIABLE_NAME.match(name):
            raise value.error(
                f"{name!r} is not a variable name (letters, digits and '_', not starting with"
                " a digit)"
            )
        variables.append((name, _variable_value(value)))
    return tuple(variables)


def _variable_value(located: _Located) -> str:
    node = located.node
    if (
        not isinstance(node, yaml.ScalarNode)
        or node.tag == _NULL
        or not node.tag.startswith(_YAML_TAG)
    ):
        raise located.error(f"expected a string, number or boolean, got {_describe(node)}")
    if node.tag == _BOOL and node.value.lower() in _TRUE_FALSE:
        return node.value.lower()
    # Numbers keep the text as written: PYTHON: 3.10 must not become "3.1".
    return str(node.value)


def _test(located: _Located, image_names: list[str], policy: SpecPolicy | None) -> TestSpec:
    fields = _entries(located, TEST_KEYS)
    env = _variables(fields["env"]) if "env" in fields else ()
    env_names = {name for name, _ in env}
    secrets = _secrets(fields["secrets"], env_names) if "secrets" in fields else ()
    image = _image_name(fields, image_names)
    timeout = (
        _integer(fields["timeout"], minimum=1, maximum=MAX_TEST_TIMEOUT)
        if "timeout" in fields
        else DEFAULT_TEST_TIMEOUT
    )
    if "command" in fields and "steps" in fields:
        raise fields["steps"].error("give either test.command (one step) or test.steps, not both")
    if "command" not in fields and "steps" not in fields:
        raise SpecError("required (or test.steps)", line=located.line, key=f"{located.key}.command")
    steps = (
        _steps(fields["steps"], image_names, default_image=image, default_timeout=timeout)
        if "steps" in fields
        else ()
    )
    test = TestSpec(
        image=image,
        command=_command(fields["command"]) if "command" in fields else (),
        timeout=timeout,
        env=env,
        secrets=secrets,
        memory_bytes=_memory(fields["memory"]) if "memory" in fields else DEFAULT_MEMORY_BYTES,
        cpus=_cpus(fields["cpus"]) if "cpus" in fields else DEFAULT_CPUS,
        pids=_integer(fields["pids"], minimum=MIN_PIDS) if "pids" in fields else DEFAULT_PIDS,
        user=_user(fields["user"]) if "user" in fields else None,
        network=_boolean(fields["network"]) if "network" in fields else False,
        steps=steps,
        reports=_reports(fields["reports"]) if "reports" in fields else (),
        cache=_cache_paths(fields["cache"]) if "cache" in fields else (),
    )
    if policy is not None and (refusal := policy_refusal_of_test(test, policy)):
        field, message = refusal
        raise fields.get(field, _Located(None, f"{located.key}.{field}", located.line)).error(
            message
        )
    return test


def _steps(
    located: _Located, image_names: list[str], *, default_image: str, default_timeout: int
) -> tuple[StepSpec, ...]:
    """test.steps: steps run in order; a group `{parallel: true, steps: [...]}` side by side."""
    steps: list[StepSpec] = []
    names: dict[str, int | None] = {}
    items = _items(located)
    if not items:
        raise located.error("at least one step is required")
    for group, item in enumerate(items):
        entries = _entries(item)
        if "parallel" in entries or "steps" in entries:
            fields = _entries(item, STEP_GROUP_KEYS)
            if not _boolean(_required(fields, "parallel", item)):
                raise fields["parallel"].error(
                    "a group of steps is `parallel: true`; list steps in order otherwise"
                )
            members = _items(_required(fields, "steps", item))
            if len(members) < 2:
                raise fields["steps"].error("a parallel group needs at least two steps")
        else:
            members = [item]
        for member in members:
            step = _step(member, image_names, default_image, default_timeout, group)
            if step.name in names:
                raise member.error(
                    f"duplicate step name {step.name!r} (first on line {names[step.name]})"
                )
            names[step.name] = member.line
            steps.append(step)
    return tuple(steps)


def _step(
    located: _Located, image_names: list[str], default_image: str, default_timeout: int, group: int
) -> StepSpec:
    fields = _entries(located, STEP_KEYS)
    name = _non_empty_string(_required(fields, "name", located))
    if not _STEP_NAME.match(name):
        raise fields["name"].error(
            f"{name!r} is not a step name (1 to 63 letters, digits, '_', '.' or '-')"
        )
    return StepSpec(
        name=name,
        command=_command(_required(fields, "command", located)),
        image=_image_name(fields, image_names) if "image" in fields else default_image,
        env=_variables(fields["env"]) if "env" in fields else (),
        timeout=(
            _integer(fields["timeout"], minimum=1, maximum=MAX_TEST_TIMEOUT)
            if "timeout" in fields
            else default_timeout
        ),
        group=group,
    )


def _reports(located: _Located) -> tuple[str, ...]:
    """Globs of JUnit XML files, inside the container (relative: to its working folder)."""
    reports: list[str] = []
    for item in _items(located):
        pattern = _non_empty_string(item)
        if any(ord(character) < 32 for character in pattern):
            raise item.error(f"{pattern!r} contains a control character")
        if ".." in pattern.split("/"):
            raise item.error(f"{pattern!r} contains '..'")
        if pattern not in reports:
            reports.append(pattern)
    return tuple(reports)


def _cache_paths(located: _Located) -> tuple[str, ...]:
    """Absolute folders of the test container kept between runs (never a system folder)."""
    paths: list[str] = []
    for item in _items(located):
        path = _non_empty_string(item)
        if not path.startswith("/") or ".." in path.split("/") or "\\" in path:
            raise item.error(f"{path!r} must be an absolute path without '..'")
        normalised = posixpath.normpath(path)
        if normalised == "/" or any(
            normalised == root or normalised.startswith(root + "/") for root in _CACHE_REFUSED_ROOTS
        ):
            raise item.error(f"{path!r} is a system folder; cache a folder of your own")
        if normalised not in paths:
            paths.append(normalised)
    return tuple(paths)


def _services(
    located: _Located, image_names: list[str], policy: SpecPolicy | None
) -> tuple[ServiceSpec, ...]:
    services: list[ServiceSpec] = []
    for name, body in _entries(located).items():
        if not _SERVICE_NAME.match(name):
            raise body.error(
                f"service name {name!r} must be 1 to 32 lowercase letters, digits or '-', "
                "starting with a letter (it is the service's host name)"
            )
        fields = _entries(body, SERVICE_KEYS)
        image = _non_empty_string(_required(fields, "image", body))
        if image not in image_names and not _IMAGE_REFERENCE.match(image):
            raise fields["image"].error(
                f"{image!r} is neither an image of the stack ({', '.join(image_names)}) nor an "
                "image reference (registry.example.com/team/postgres:15)"
            )
        service = ServiceSpec(
            name=name,
            image=image,
            env=_variables(fields["env"]) if "env" in fields else (),
            command=_command(fields["command"]) if "command" in fields else None,
            ready=_command(fields["ready"]) if "ready" in fields else None,
            ready_timeout=(
                _integer(fields["ready_timeout"], minimum=1, maximum=MAX_READY_TIMEOUT)
                if "ready_timeout" in fields
                else DEFAULT_READY_TIMEOUT
            ),
            user=_user(fields["user"]) if "user" in fields else None,
            memory_bytes=_memory(fields["memory"]) if "memory" in fields else DEFAULT_MEMORY_BYTES,
            cpus=_cpus(fields["cpus"]) if "cpus" in fields else DEFAULT_CPUS,
            pids=_integer(fields["pids"], minimum=MIN_PIDS) if "pids" in fields else DEFAULT_PIDS,
        )
        if policy is not None and (refusal := policy_refusal_of_service(service, policy)):
            field, message = refusal
            raise fields.get(field, body).error(message)
        services.append(service)
    return tuple(services)


def policy_refusal_of_service(service: ServiceSpec, policy: SpecPolicy) -> tuple[str, str] | None:
    """(the service field, why) when `service` asks for more than `policy` allows, else None."""
    as_test = TestSpec(
        image="",
        command=(),
        timeout=1,
        env=(),
        secrets=(),
        memory_bytes=service.memory_bytes,
        cpus=service.cpus,
        pids=service.pids,
        user=None,
        network=False,
    )
    return policy_refusal_of_test(as_test, policy)


def policy_refusal_of_test(test: TestSpec, policy: SpecPolicy) -> tuple[str, str] | None:
    """(the test field, why) when `test` asks for more than `policy` allows, else None.

    Checked when dockyard.yml is read (with its line) and again before the test runs.
    """
    if test.memory_bytes > policy.max_memory_bytes:
        return "memory", (
            f"{format_bytes(test.memory_bytes)} is above this installation's ceiling of "
            f"{format_bytes(policy.max_memory_bytes)} (DOCKYARD_TEST_MAX_MEMORY)"
        )
    if test.pids > policy.max_pids:
        return "pids", (
            f"{test.pids} is above this installation's ceiling of {policy.max_pids} "
            "(DOCKYARD_TEST_MAX_PIDS)"
        )
    if test.cpus > policy.max_cpus:
        return "cpus", (
            f"{test.cpus:g} is above this installation's ceiling of {policy.max_cpus:g} "
            "(DOCKYARD_TEST_MAX_CPUS)"
        )
    if test.timeout > policy.max_timeout:
        return "timeout", (
            f"{test.timeout}s is above this installation's ceiling of {policy.max_timeout}s "
            "(DOCKYARD_TEST_MAX_TIMEOUT)"
        )
    for step in test.steps:
        if step.timeout > policy.max_timeout:
            return "steps", (
                f"step {step.name}: {step.timeout}s is above this installation's ceiling of "
                f"{policy.max_timeout}s (DOCKYARD_TEST_MAX_TIMEOUT)"
            )
    if test.network and policy.network_refusal is not None:
        return "network", policy.network_refusal
    return None


def publish_repository_refusal(
    repository: str, *, namespace: str, grants: tuple[str, ...] = ()
) -> str | None:
    """Why a project whose namespace is `namespace` may not push to `repository`, or None.

    Its namespace is `<registry>/<slug>` and every repository below it; outside it, only the
    repositories an operator granted the project. Registry host names compare lowercased.
    """
    wanted = repository.lower()
    own = namespace.lower()
    candidates = f"{own}/{CANDIDATES_FOLDER}"
    if wanted == candidates or wanted.startswith(candidates + "/"):
        return (
            f"{repository!r} is where Dockyard keeps the candidates of this project's runs "
            f"(images not yet published); publish elsewhere in {namespace}"
        )
    if wanted == own or wanted.startswith(own + "/"):
        return None
    if wanted in {grant.lower() for grant in grants}:
        return None
    return (
        f"{repository!r} is outside this project's namespace {namespace} (and its "
        "sub-repositories); an operator may grant the project another repository"
    )


def format_bytes(size: int) -> str:
    """A size as dockyard.yml writes it: 512m, 4g, 1536k."""
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    if size >= 1024**2:
        return f"{size / 1024**2:.1f}m"
    return str(size)


def _image_name(fields: dict[str, _Located], image_names: list[str]) -> str:
    """The `image:` of test or publish; by default the last image, the one the others feed."""
    if "image" not in fields:
        return image_names[-1]
    name = _non_empty_string(fields["image"])
    if name not in image_names:
        raise fields["image"].error(f"unknown image {name!r}")
    return name


def _command(located: _Located) -> tuple[str, ...]:
    node = located.node
    if isinstance(node, yaml.SequenceNode):
        command = tuple(_string(item) for item in _items(located))
    else:
        text = _string(located)
        try:
            command = tuple(shlex.split(text))
        except ValueError as error:
            raise located.error(f"cannot split {text!r} into words: {error}") from None
    if not command:
        raise located.error("must not be empty")
    return command


def _secrets(located: _Located, env_names: set[str]) -> tuple[str, ...]:
    secrets: list[str] = []
    for item in _items(located):
        name = _string(item)
        if not _VARIABLE_NAME.match(name):
            raise item.error(
                f"{name!r} is not a variable name (letters, digits and '_', not starting with"
                " a digit)"
            )
        if name in secrets:
            raise item.error(f"duplicate secret {name!r}")
        # Both would set the same variable in the test container; neither may silently win.
        if name in env_names:
            raise item.error(f"{name!r} is also set in test.env")
        secrets.append(name)
    return tuple(secrets)


def _memory(located: _Located) -> int:
    """Bytes, from an integer or a size such as '512m', '1.5g' or '256kb' (powers of 1024)."""
    node = located.node
    match = _MEMORY.match(node.value) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
        size = _int_value(node)
    elif isinstance(node, yaml.ScalarNode) and node.tag == _STR and match:
        # Decimal, not float: '1.1g' must be the same number of bytes on every machine.
        amount = Decimal(match["amount"]) * _MEMORY_UNITS[match["unit"].lower()]
        size = int(amount)
    else:
        raise located.error(f"expected bytes or a size like '512m', got {_describe(node)}")
    if size < MIN_MEMORY_BYTES:
        raise located.error(f"{size} bytes is below Docker's minimum of 6m; write e.g. 512m")
    return size


def _cpus(located: _Located) -> float:
    cpus = _number(located)
    # Written so that NaN fails too.
    if not 0 < cpus <= MAX_CPUS:
        raise located.error(f"must be more than 0 and at most {MAX_CPUS:g}, got {cpus:g}")
    return cpus


def _user(located: _Located) -> str:
    node = located.node
    # A bare uid is a YAML integer; take it as written.
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
        user = str(node.value)
    else:
        user = _string(located)
    if not _USER.match(user):
        raise located.error(f"{user!r} is not a user (e.g. 1000, 1000:1000 or app)")
    return user


def _publish(located: _Located, image_names: list[str], policy: SpecPolicy | None) -> PublishSpec:
    fields = _entries(located, PUBLISH_KEYS)
    repository = _repository(fields["repository"]) if "repository" in fields else None
    if policy is not None and repository is not None:
        refusal = publish_repository_refusal(
            repository, namespace=policy.publish_namespace, grants=policy.publish_grants
        )
        if refusal:
            raise fields["repository"].error(refusal)
    return PublishSpec(
        image=_image_name(fields, image_names),
        repository=repository,
        tags=_tags(fields["tags"]) if "tags" in fields else DEFAULT_TAGS,
    )


def _repository(located: _Located) -> str:
    repository = _non_empty_string(located)
    if (problem := repository_name_problem(repository)) is not None:
        raise located.error(problem)
    return repository


def repository_name_problem(repository: str) -> str | None:
    """Why `repository` cannot name an image repository to push to, or None."""
    if len(repository) > MAX_REPOSITORY_LENGTH or not _REPOSITORY.match(repository):
        return (
            f"{repository!r} is not a lowercase image repository without a tag"
            " (e.g. registry.example.com/team/app)"
        )
    return None


def _tags(located: _Located) -> tuple[str, ...]:
    tags: list[str] = []
    for item in _items(located):
        if isinstance(item.node, yaml.MappingNode):
            # Unquoted, `- {sha}` is a YAML mapping, an easy slip worth naming.
            raise item.error('expected a string, got a mapping (quote templates: "{sha}")')
        template = _non_empty_string(item)
        _check_tag_template(template, item)
        if template in tags:
            raise item.error(f"duplicate tag {template!r}")
        tags.append(template)
    if not tags:
        raise located.error("at least one tag is required")
    return tuple(tags)


def _check_tag_template(template: str, located: _Located) -> None:
    # re.split with a capturing group alternates literal text and "{placeholder}" pieces.
    for index, piece in enumerate(_TAG_PIECES.split(template)):
        if index % 2:
            placeholder = piece[1:-1]
            if placeholder not in TAG_PLACEHOLDERS:
                allowed = ", ".join("{" + name + "}" for name in TAG_PLACEHOLDERS)
                raise located.error(f"unknown placeholder {piece} (allowed: {allowed})")
        elif "{" in piece or "}" in piece:
            raise located.error(f"{template!r} has an unmatched brace")
        elif not _TAG_LITERAL.match(piece):
            refused = next(char for char in piece if not _TAG_LITERAL.match(char))
            raise located.error(
                f"{template!r} contains {refused!r}; a docker tag allows only letters, digits,"
                " '_', '.' and '-'"
            )
    # Docker tags cannot start with '.' or '-'; a leading placeholder is the caller's to render.
    if template[0] in ".-":
        raise located.error(f"{template!r}: a docker tag cannot start with {template[0]!r}")


def _deploy(located: _Located) -> DeploySpec:
    fields = _entries(located, DEPLOY_KEYS)
    health = "/"
    if "health" in fields:
        health = _non_empty_string(fields["health"])
        if not health.startswith("/"):
            raise fields["health"].error(f"{health!r} must be a path starting with '/'")
    environments = _environments(fields["environments"]) if "environments" in fields else ()
    release_timeout = DEFAULT_RELEASE_TIMEOUT
    if "release_timeout" in fields:
        if "release_command" not in fields:
            raise fields["release_timeout"].error("is only used with release_command")
        release_timeout = _integer(fields["release_timeout"], minimum=1, maximum=MAX_TEST_TIMEOUT)
    return DeploySpec(
        port=_integer(_required(fields, "port", located), minimum=1, maximum=65535),
        health=health,
        environments=environments,
        release_command=(
            _command(fields["release_command"]) if "release_command" in fields else ()
        ),
        release_timeout=release_timeout,
        watch=_watch(fields["watch"]) if "watch" in fields else None,
        replicas=(
            _integer(fields["replicas"], minimum=1, maximum=MAX_REPLICAS)
            if "replicas" in fields
            else 1
        ),
    )


def _watch(located: _Located) -> WatchSpec:
    """`watch: {seconds: 120, max_error_rate: 0.05, min_requests: 50}` (each optional)."""
    fields = _entries(located, WATCH_KEYS)
    default = WatchSpec()
    rate = default.max_error_rate
    if "max_error_rate" in fields:
        rate = _number(fields["max_error_rate"])
        if not 0 <= rate < 1:
            raise fields["max_error_rate"].error(
                f"must be a fraction of requests from 0 to below 1 (0.05 is 5%), got {rate}"
            )
    return WatchSpec(
        seconds=(
            _integer(fields["seconds"], minimum=10, maximum=MAX_WATCH_SECONDS)
            if "seconds" in fields
            else default.seconds
        ),
        max_error_rate=rate,
        min_requests=(
            _integer(fields["min_requests"], minimum=1)
            if "min_requests" in fields
            else default.min_requests
        ),
    )


def _environment_watch(located: _Located) -> WatchSpec | bool:
    """An environment's own watch, or `watch: false` for none there."""
    node = located.node
    if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
        if _boolean(located):
            raise located.error("`watch: true` says nothing: give {seconds, max_error_rate, ...}")
        return False
    return _watch(located)


def _environments(located: _Located) -> tuple[EnvironmentSpec, ...]:
    entries = _entries(located)
    environments: list[EnvironmentSpec] = []
    after_fields: dict[str, _Located] = {}
    for name, body in entries.items():
        if not _ENVIRONMENT_NAME.match(name):
            raise body.error(
                f"environment name {name!r} must be 1 to 32 lowercase letters, digits or '-',"
                " starting with a letter"
            )
        fields = _entries(body, ENVIRONMENT_KEYS)
        after = None
        if "after" in fields:
            after = _non_empty_string(fields["after"])
            if after == name:
                raise fields["after"].error(f"environment {name!r} cannot come after itself")
            if after not in entries:
                raise fields["after"].error(f"unknown environment {after!r}")
            after_fields[name] = fields["after"]
        environments.append(
            EnvironmentSpec(
                name=name,
                auto=_boolean(fields["auto"]) if "auto" in fields else False,
                branches=(
                    tuple(_non_empty_string(item) for item in _items(fields["branches"]))
                    if "branches" in fields
                    else ()
                ),
                after=after,
                watch=_environment_watch(fields["watch"]) if "watch" in fields else None,
            )
        )
    _refuse_after_cycles(environments, after_fields)
    return tuple(environments)


def _refuse_after_cycles(
    environments: list[EnvironmentSpec], after_fields: dict[str, _Located]
) -> None:
    after = {environment.name: environment.after for environment in environments}
    for environment in environments:
        # Each environment has at most one `after`, so a cycle is a chain that comes back.
        chain = [environment.name]
        while (following := after[chain[-1]]) is not None:
            if following == environment.name:
                cycle = " -> ".join([*chain, following])
                raise after_fields[environment.name].error(f"forms a cycle: {cycle}")
            if following in chain:
                break  # a cycle that does not pass through this environment; found from its own
            chain.append(following)
