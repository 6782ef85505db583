"""What an installation lets a project's dockyard.yml ask for: ceilings, the network, where it
publishes. Refusals name the line, the key and the setting that refused."""

from textwrap import dedent

import pytest
from django.test import override_settings

from projects.services import project_spec_policy
from projects.spec import SpecError, SpecPolicy, parse_spec, publish_repository_refusal
from tests.factories import make_project

POLICY = SpecPolicy(
    max_memory_bytes=4 * 1024**3,
    max_pids=4096,
    max_cpus=2.0,
    max_timeout=3600,
    network_refusal="true is refused: no network here (DOCKYARD_TEST_NETWORK=none)",
    publish_namespace="127.0.0.1:5000/web",
    publish_grants=("127.0.0.1:5000/shared/web-docs",),
)


def refusal(text: str, policy: SpecPolicy = POLICY) -> str:
    with pytest.raises(SpecError) as raised:
        parse_spec(dedent(text), policy=policy)
    return str(raised.value)


def with_test_fields(**fields: str) -> str:
    lines = ["images:", "  app: {}", "test:", '  command: ["true"]']
    return "\n".join([*lines, *(f"  {key}: {value}" for key, value in fields.items())]) + "\n"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "pids",
            "4000000",
            "test.pids: 4000000 is above this installation's ceiling of 4096 "
            "(DOCKYARD_TEST_MAX_PIDS)",
        ),
        (
            "memory",
            "99999999g",
            "test.memory: 99999999g is above this installation's ceiling of "
            "4g (DOCKYARD_TEST_MAX_MEMORY)",
        ),
        (
            "cpus",
            "3",
            "test.cpus: 3 is above this installation's ceiling of 2 (DOCKYARD_TEST_MAX_CPUS)",
        ),
        (
            "timeout",
            "7200",
            "test.timeout: 7200s is above this installation's ceiling of 3600s "
            "(DOCKYARD_TEST_MAX_TIMEOUT)",
        ),
        (
            "network",
            "true",
            "test.network: true is refused: no network here (DOCKYARD_TEST_NETWORK=none)",
        ),
    ],
)
def test_a_request_above_a_ceiling_is_refused_on_its_line(
    field: str, value: str, message: str
) -> None:
    assert refusal(with_test_fields(**{field: value})) == f"dockyard.yml:5: {message}"


def test_requests_at_the_ceilings_are_accepted() -> None:
    spec = parse_spec(
        with_test_fields(pids="4096", memory="4g", cpus="2", timeout="3600"), policy=POLICY
    )
    assert spec.test is not None
    assert (spec.test.pids, spec.test.memory_bytes, spec.test.cpus) == (4096, 4 * 1024**3, 2.0)


def test_a_default_above_a_lowered_ceiling_is_refused_at_the_test_section() -> None:
    low = SpecPolicy(**{**POLICY.__dict__, "max_memory_bytes": 256 * 1024**2})
    assert refusal(with_test_fields(), low) == (
        "dockyard.yml:3: test.memory: 512m is above this installation's ceiling of 256m "
        "(DOCKYARD_TEST_MAX_MEMORY)"
    )


@pytest.mark.parametrize(
    "repository",
    ["127.0.0.1:5000/web", "127.0.0.1:5000/web/docs", "127.0.0.1:5000/shared/web-docs"],
)
def test_a_project_publishes_in_its_namespace_and_where_it_was_granted(repository: str) -> None:
    text = f"images:\n  app: {{}}\npublish:\n  repository: {repository}\n"
    assert parse_spec(text, policy=POLICY).publish.repository == repository


@pytest.mark.parametrize(
    "repository",
    [
        "127.0.0.1:5000/other/base",
        "127.0.0.1:5000/web-other",  # a slug that starts with ours is not ours
        "127.0.0.1:5000/webx",
        "registry.example.com/web",
        "acme/web",  # Docker Hub
        "127.0.0.1:5000/shared/web-docs/sub",  # a grant is one repository, not a namespace
    ],
)
def test_a_project_cannot_publish_elsewhere(repository: str) -> None:
    text = f"images:\n  app: {{}}\npublish:\n  repository: {repository}\n"
    assert refusal(text) == (
        f"dockyard.yml:4: publish.repository: {repository!r} is outside this project's "
        "namespace 127.0.0.1:5000/web (and its sub-repositories); an operator may grant the "
        "project another repository"
    )


def test_registry_names_compare_without_case() -> None:
    assert publish_repository_refusal("127.0.0.1:5000/web", namespace="127.0.0.1:5000/Web") is None


@pytest.mark.django_db
def test_the_network_takes_the_installation_and_the_project_operator_both() -> None:
    project = make_project()
    assert "DOCKYARD_TEST_NETWORK=none" in (project_spec_policy(project).network_refusal or "")
    with override_settings(DOCKYARD_TEST_NETWORK="host"):
        assert f"project {project.slug} may not" in (
            project_spec_policy(project).network_refusal or ""
        )
        project.test_network_allowed = True
        assert project_spec_policy(project).network_refusal is None
    assert project_spec_policy(project).network_refusal is not None


@pytest.mark.django_db
@override_settings(DOCKYARD_REGISTRY="registry.example.com", DOCKYARD_TEST_MAX_PIDS=100)
def test_the_policy_reads_the_settings_and_the_projects_grants() -> None:
    project = make_project(slug="web")
    project.publish_repositories = "registry.example.com/shared/one\n\n  other.example/two \n"
    policy = project_spec_policy(project)
    assert policy.publish_namespace == "registry.example.com/web"
    assert policy.publish_grants == ("registry.example.com/shared/one", "other.example/two")
    assert policy.max_pids == 100


def test_a_project_may_not_publish_where_dockyard_keeps_its_candidates() -> None:
    namespace = "127.0.0.1:5000/web"
    for repository in ("127.0.0.1:5000/web/candidates", "127.0.0.1:5000/web/candidates/app"):
        refusal = publish_repository_refusal(repository, namespace=namespace)
        assert refusal is not None and "candidates" in refusal
    assert publish_repository_refusal("127.0.0.1:5000/web/candidate-x", namespace=namespace) is None
