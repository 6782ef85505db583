import json
import pickle
from textwrap import dedent
from typing import Any

import pytest

from projects.spec import (
    DeploySpec,
    EnvironmentSpec,
    ImageSpec,
    PipelineSpec,
    PublishSpec,
    SpecError,
    TestSpec,
    WatchSpec,
    default_spec,
    parse_spec,
    spec_from_dict,
    spec_to_dict,
    watch_of_environment,
)

EXAMPLE = """\
images:                       # ordered mapping, required, at least one image
  base:
    dockerfile: docker/base.Dockerfile
    context: docker
    args: {PYTHON: "3.11"}
  app:
    dockerfile: Dockerfile    # ARG BASE_IMAGE / FROM ${BASE_IMAGE}
    from: base
test:
  image: app
  command: ["python3", "-m", "pytest", "-q"]
  timeout: 600
  env: {CI: "true"}
  secrets: [NPM_TOKEN]
  memory: 512m
  cpus: 1
  pids: 256
  user: "1000"
  network: false
publish:
  repository: 127.0.0.1:5000/acme/web
  tags: ["{sha}", "{branch}", "{tag}"]
deploy:
  port: 8000
  health: /healthz
  environments:
    staging: {auto: true, branches: [main]}
    production: {after: staging}
"""

MiB = 1024 * 1024

DEFAULT_IMAGE = ImageSpec(
    name="app", dockerfile="Dockerfile", context=".", from_image=None, from_project=None, args=()
)
DEFAULT_PUBLISH = PublishSpec(image="app", repository=None, tags=("{sha}", "{branch}", "{tag}"))


def error_for(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(dedent(text))
    return str(caught.value)


def test_the_example_parses_to_the_exact_dataclasses() -> None:
    assert parse_spec(EXAMPLE) == PipelineSpec(
        images=(
            ImageSpec(
                name="base",
                dockerfile="docker/base.Dockerfile",
                context="docker",
                from_image=None,
                from_project=None,
                args=(("PYTHON", "3.11"),),
            ),
            ImageSpec(
                name="app",
                dockerfile="Dockerfile",
                context=".",
                from_image="base",
                from_project=None,
                args=(),
            ),
        ),
        test=TestSpec(
            image="app",
            command=("python3", "-m", "pytest", "-q"),
            timeout=600,
            env=(("CI", "true"),),
            secrets=("NPM_TOKEN",),
            memory_bytes=512 * MiB,
            cpus=1.0,
            pids=256,
            user="1000",
            network=False,
        ),
        publish=PublishSpec(
            image="app",
            repository="127.0.0.1:5000/acme/web",
            tags=("{sha}", "{branch}", "{tag}"),
        ),
        deploy=DeploySpec(
            port=8000,
            health="/healthz",
            environments=(
                EnvironmentSpec(name="staging", auto=True, branches=("main",), after=None),
                EnvironmentSpec(name="production", auto=False, branches=(), after="staging"),
            ),
        ),
    )


# --- Defaults ---------------------------------------------------------------------------------


def test_an_image_without_settings_builds_the_root_dockerfile_and_nothing_else_runs() -> None:
    spec = parse_spec("images:\n  app:\n")

    assert spec == PipelineSpec(
        images=(DEFAULT_IMAGE,), test=None, publish=DEFAULT_PUBLISH, deploy=None
    )


def test_a_test_section_with_only_a_command_gets_the_default_limits() -> None:
    spec = parse_spec("images: {app: }\ntest: {command: make test}\n")

    assert spec.test == TestSpec(
        image="app",
        command=("make", "test"),
        timeout=600,
        env=(),
        secrets=(),
        memory_bytes=512 * MiB,
        cpus=1.0,
        pids=256,
        user=None,
        network=False,
    )


def test_test_and_publish_use_the_last_image_by_default() -> None:
    spec = parse_spec(
        dedent("""\
        images:
          base:
          app: {from: base}
        test: {command: pytest}
        """)
    )

    assert spec.test is not None
    assert spec.test.image == "app"
    assert spec.publish.image == "app"


def test_test_and_publish_can_name_an_earlier_image() -> None:
    spec = parse_spec(
        dedent("""\
        images:
          tools:
          app:
        test: {image: tools, command: pytest}
        publish: {image: tools}
        """)
    )

    assert spec.test is not None
    assert spec.test.image == "tools"
    assert spec.publish.image == "tools"


def test_a_deploy_section_checks_the_root_path_and_has_no_environments_by_default() -> None:
    spec = parse_spec("images: {app: }\ndeploy: {port: 8000}\n")

    assert spec.deploy == DeploySpec(port=8000, health="/", environments=())


def test_an_environment_without_settings_is_manual_for_every_branch() -> None:
    spec = parse_spec("images: {app: }\ndeploy:\n  port: 80\n  environments:\n    staging:\n")

    assert spec.deploy is not None
    assert spec.deploy.environments == (
        EnvironmentSpec(name="staging", auto=False, branches=(), after=None),
    )


# --- What the parser accepts ------------------------------------------------------------------


def test_a_command_string_is_split_like_a_shell_would() -> None:
    spec = parse_spec("images: {app: }\ntest:\n  command: sh -c 'pytest -q && ruff check .'\n")

    assert spec.test is not None
    assert spec.test.command == ("sh", "-c", "pytest -q && ruff check .")


@pytest.mark.parametrize(
    ("written", "expected_bytes"),
    [
        ("536870912", 512 * MiB),
        ("512m", 512 * MiB),
        ("512MB", 512 * MiB),
        ("1g", 1024 * MiB),
        ("2Gb", 2048 * MiB),
        ("1.5g", 1536 * MiB),
        ("8192k", 8 * MiB),
        ("'1024 m'", 1024 * MiB),
    ],
)
def test_memory_is_bytes_or_a_size_with_a_unit(written: str, expected_bytes: int) -> None:
    spec = parse_spec(f"images: {{app: }}\ntest: {{command: x, memory: {written}}}\n")

    assert spec.test is not None
    assert spec.test.memory_bytes == expected_bytes


def test_cpus_may_be_a_fraction() -> None:
    spec = parse_spec("images: {app: }\ntest: {command: x, cpus: 0.5}\n")

    assert spec.test is not None
    assert spec.test.cpus == 0.5


def test_build_arg_values_become_strings_as_written() -> None:
    spec = parse_spec(
        dedent("""\
        images:
          app:
            args:
              PYTHON: 3.10
              WORKERS: 8
              DEBUG: true
              RELEASE: False
              NAME: "web"
              COUNTRY: NO
        """)
    )

    # 3.10 stays "3.10" (not 3.1), and YAML 1.1's `NO` stays a word rather than a boolean.
    assert spec.image("app").args == (
        ("PYTHON", "3.10"),
        ("WORKERS", "8"),
        ("DEBUG", "true"),
        ("RELEASE", "false"),
        ("NAME", "web"),
        ("COUNTRY", "NO"),
    )


def test_an_image_can_be_built_from_another_projects_published_image() -> None:
    spec = parse_spec("images:\n  app: {from: 'project:acme-base'}\n")

    assert spec.image("app").from_project == "acme-base"
    assert spec.image("app").from_image is None


def test_paths_are_kept_in_their_normal_form() -> None:
    spec = parse_spec(
        "images:\n  app: {dockerfile: ./docker//app.Dockerfile, context: ./docker/}\n"
    )

    assert spec.image("app").dockerfile == "docker/app.Dockerfile"
    assert spec.image("app").context == "docker"


@pytest.mark.parametrize(("written", "user"), [("1000", "1000"), ("'1000:1000'", "1000:1000")])
def test_a_user_may_be_a_bare_uid_or_a_uid_and_gid(written: str, user: str) -> None:
    spec = parse_spec(f"images: {{app: }}\ntest: {{command: x, user: {written}}}\n")

    assert spec.test is not None
    assert spec.test.user == user


def test_an_environment_may_come_after_one_defined_further_down() -> None:
    spec = parse_spec(
        dedent("""\
        images: {app: }
        deploy:
          port: 80
          environments:
            production: {after: staging}
            staging: {auto: true, branches: [main, "release/*"]}
        """)
    )

    assert spec.deploy is not None
    assert spec.deploy.environments == (
        EnvironmentSpec(name="production", auto=False, branches=(), after="staging"),
        EnvironmentSpec(name="staging", auto=True, branches=("main", "release/*"), after=None),
    )


def test_every_placeholder_and_literal_tag_characters_are_accepted() -> None:
    spec = parse_spec(
        dedent("""\
        images: {app: }
        publish:
          tags: ["{sha}", "v{tag}", "{branch}-{short_sha}", "run_{run}.x"]
        """)
    )

    assert spec.publish.tags == ("{sha}", "v{tag}", "{branch}-{short_sha}", "run_{run}.x")


def test_the_image_of_a_spec_is_found_by_name() -> None:
    spec = parse_spec(EXAMPLE)

    assert spec.image("base").context == "docker"
    with pytest.raises(KeyError):
        spec.image("bse")


# --- default_spec -----------------------------------------------------------------------------


def test_a_repository_without_a_spec_builds_its_dockerfile_and_tests_nothing() -> None:
    assert default_spec() == PipelineSpec(
        images=(DEFAULT_IMAGE,), test=None, publish=DEFAULT_PUBLISH, deploy=None
    )


def test_a_repository_without_a_spec_runs_the_projects_test_command() -> None:
    spec = default_spec(test_command=("make", "test"), test_timeout=120)

    assert spec.test == TestSpec(
        image="app",
        command=("make", "test"),
        timeout=120,
        env=(),
        secrets=(),
        memory_bytes=512 * MiB,
        cpus=1.0,
        pids=256,
        user=None,
        network=False,
    )
    assert spec.images == (DEFAULT_IMAGE,)
    assert spec.deploy is None


def test_the_default_spec_is_what_a_minimal_file_says() -> None:
    assert default_spec(test_command=("pytest",)) == parse_spec(
        "images: {app: }\ntest: {command: pytest}\n"
    )


# --- The dict form ----------------------------------------------------------------------------

EVERY_FIELD = """\
images:
  base:
    dockerfile: docker/base.Dockerfile
    context: docker
    from: project:acme-python
    args: {PYTHON: "3.11", DEBUG: false}
  app:
    from: base
    args: {Z_LAST: z, A_FIRST: a}
test:
  image: base
  command: pytest -q
  timeout: 1200
  env: {CI: "true", LANG: C.UTF-8}
  secrets: [NPM_TOKEN, PYPI_TOKEN]
  memory: 1.5g
  cpus: 2.5
  pids: 512
  user: "1000:1000"
  network: true
publish:
  image: app
  repository: registry.example.com/team/app
  tags: ["{branch}-{short_sha}", "run-{run}"]
deploy:
  port: 443
  health: /healthz
  environments:
    production: {after: staging, branches: ["release/*"]}
    staging: {auto: true, branches: [main, develop]}
"""


@pytest.mark.parametrize(
    "spec",
    [
        parse_spec(EXAMPLE),
        parse_spec(EVERY_FIELD),
        default_spec(),
        default_spec(test_command=("make", "test"), test_timeout=30),
    ],
    ids=["example", "every-field", "default", "default-with-tests"],
)
def test_a_spec_comes_back_unchanged_from_its_dict_even_through_json(spec: PipelineSpec) -> None:
    data = spec_to_dict(spec)

    assert spec_from_dict(data) == spec
    assert spec_from_dict(json.loads(json.dumps(data))) == spec
    assert_only_json_types(data)


def test_the_dict_form_keeps_order_in_lists_because_json_objects_may_not() -> None:
    assert spec_to_dict(parse_spec(EVERY_FIELD))["images"][1] == {
        "name": "app",
        "dockerfile": "Dockerfile",
        "context": ".",
        "from_image": "base",
        "from_project": None,
        "args": [["Z_LAST", "z"], ["A_FIRST", "a"]],
    }


def test_the_dict_form_of_the_default_spec_is_plain_data() -> None:
    assert spec_to_dict(default_spec()) == {
        "images": [
            {
                "name": "app",
                "dockerfile": "Dockerfile",
                "context": ".",
                "from_image": None,
                "from_project": None,
                "args": [],
            }
        ],
        "test": None,
        "publish": {"image": "app", "repository": None, "tags": ["{sha}", "{branch}", "{tag}"]},
        "deploy": None,
        "services": [],
    }


def assert_only_json_types(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_only_json_types(item)
    elif isinstance(value, list):
        for item in value:
            assert_only_json_types(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), repr(value)


# --- SpecError --------------------------------------------------------------------------------


def test_an_error_names_the_file_line_and_key() -> None:
    error = SpecError("unknown image 'bse'", line=7, key="images.app.from")

    assert str(error) == "dockyard.yml:7: images.app.from: unknown image 'bse'"
    assert (error.message, error.line, error.key, error.filename) == (
        "unknown image 'bse'",
        7,
        "images.app.from",
        "dockyard.yml",
    )


def test_an_error_leaves_out_the_key_or_line_it_does_not_know() -> None:
    assert str(SpecError("expected a mapping, got a list", line=3)) == (
        "dockyard.yml:3: expected a mapping, got a list"
    )
    assert str(SpecError("required", key="images")) == "dockyard.yml: images: required"


def test_an_error_keeps_its_parts_when_pickled() -> None:
    error = SpecError("required", line=2, key="test.command", filename="ci/dockyard.yml")

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.message, copy.line, copy.key, copy.filename) == (
        "required",
        2,
        "test.command",
        "ci/dockyard.yml",
    )
    assert str(copy) == "ci/dockyard.yml:2: test.command: required"


def test_errors_name_the_file_they_were_given() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("images:\n  app: {from: bse}\n", filename="deploy/dockyard.yml")

    assert str(caught.value) == "deploy/dockyard.yml:2: images.app.from: unknown image 'bse'"
    assert caught.value.filename == "deploy/dockyard.yml"


# --- Errors: the file as a whole --------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n"])
def test_an_empty_file_is_missing_its_images(text: str) -> None:
    assert error_for(text) == "dockyard.yml: images: required"


def test_a_file_without_images_is_refused_at_its_first_line() -> None:
    assert error_for("test: {command: x}\n") == "dockyard.yml:1: images: required"


def test_the_top_level_must_be_a_mapping() -> None:
    assert error_for("- images\n") == "dockyard.yml:1: expected a mapping, got a list"


def test_an_unknown_top_level_key_is_named_with_the_allowed_ones() -> None:
    text = """\
    images:
      app:
    tests:
      command: pytest
    """
    assert error_for(text) == (
        "dockyard.yml:3: tests: unknown key (allowed: images, services, test, publish, deploy)"
    )


def test_a_yaml_syntax_error_is_named_with_the_line_of_the_problem() -> None:
    text = """\
    images:
      app:
        dockerfile: a: b
    """
    assert error_for(text) == "dockyard.yml:3: invalid YAML: mapping values are not allowed here"


def test_an_unclosed_flow_list_is_a_syntax_error_at_the_end_of_the_file() -> None:
    assert error_for("images: [app\n") == (
        "dockyard.yml:2: invalid YAML: while parsing a flow sequence: "
        "expected ',' or ']', but got '<stream end>'"
    )


def test_a_control_character_is_refused_with_its_line() -> None:
    assert error_for("images:\n  app: {dockerfile: \x07}\n") == (
        "dockyard.yml:2: invalid YAML: unacceptable character #x0007: "
        "special characters are not allowed"
    )


def test_a_second_yaml_document_is_refused() -> None:
    assert error_for("images: {app: }\n---\nimages: {web: }\n") == (
        "dockyard.yml:2: invalid YAML: expected a single document in the stream: "
        "but found another document"
    )


def test_a_duplicate_image_is_refused_although_yaml_would_keep_the_last() -> None:
    text = """\
    images:
      app:
        dockerfile: a.Dockerfile
      app:
        dockerfile: b.Dockerfile
    """
    assert error_for(text) == "dockyard.yml:4: images.app: duplicate key (first on line 2)"


def test_a_duplicate_section_is_refused() -> None:
    text = """\
    images: {app: }
    test: {command: a}
    test: {command: b}
    """
    assert error_for(text) == "dockyard.yml:3: test: duplicate key (first on line 2)"


def test_a_duplicate_setting_is_refused() -> None:
    text = """\
    images: {app: }
    test:
      command: a
      timeout: 60
      timeout: 120
    """
    assert error_for(text) == "dockyard.yml:5: test.timeout: duplicate key (first on line 4)"


def test_a_key_that_is_not_a_name_is_refused() -> None:
    text = """\
    images:
      ? [a, b]
      : {}
    """
    assert error_for(text) == "dockyard.yml:2: images: expected a name as key, got a list"


# --- Errors: images ---------------------------------------------------------------------------


def test_an_empty_images_section_is_refused() -> None:
    assert error_for("images: {}\n") == "dockyard.yml:1: images: at least one image is required"


def test_images_must_be_a_mapping_of_names() -> None:
    assert error_for("images: [app]\n") == "dockyard.yml:1: images: expected a mapping, got a list"


@pytest.mark.parametrize("name", ["App", "-app", "my app", "a" * 64])
def test_an_image_name_outside_the_allowed_characters_is_refused(name: str) -> None:
    assert error_for(f"images:\n  '{name}':\n") == (
        f"dockyard.yml:2: images.{name}: image name {name!r} must be 1 to 63 lowercase letters,"
        " digits, '_', '.' or '-', starting with a letter or digit"
    )


def test_an_unknown_image_setting_is_named_with_the_allowed_ones() -> None:
    text = """\
    images:
      app:
        dockerfile: Dockerfile
        target: prod
    """
    assert error_for(text) == (
        "dockyard.yml:4: images.app.target: unknown key (allowed: dockerfile, context, from, args)"
    )


def test_an_image_with_a_list_for_settings_is_refused() -> None:
    assert error_for("images:\n  app: [Dockerfile]\n") == (
        "dockyard.yml:2: images.app: expected a mapping, got a list"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "'/etc/passwd' is absolute; give a path inside the repository"),
        (
            "../other/Dockerfile",
            "'../other/Dockerfile' contains '..'; give a path inside the repository",
        ),
        ("docker/../../x", "'docker/../../x' contains '..'; give a path inside the repository"),
        ("docker/a/../b", "'docker/a/../b' contains '..'; give a path inside the repository"),
        ('"Docker\\0file"', "'Docker\\x00file' contains a control character"),
        ('"Docker\\nfile"', "'Docker\\nfile' contains a control character"),
        ("''", "must not be empty"),
        ("42", "expected a string, got 42"),
        ("[Dockerfile]", "expected a string, got a list"),
        ("", "expected a string, got nothing"),
    ],
)
def test_a_dockerfile_outside_the_repository_is_refused(path: str, message: str) -> None:
    text = f"""\
    images:
      app:
        dockerfile: {path}
    """
    assert error_for(text) == f"dockyard.yml:3: images.app.dockerfile: {message}"


def test_a_windows_path_is_refused() -> None:
    # Single-quoted YAML keeps the backslash as written.
    assert error_for("images:\n  app: {dockerfile: 'docker\\app.Dockerfile'}\n") == (
        "dockyard.yml:2: images.app.dockerfile: 'docker\\\\app.Dockerfile' contains a backslash;"
        " use '/'"
    )


def test_a_context_outside_the_repository_is_refused() -> None:
    text = """\
    images:
      app:
        context: ..
    """
    assert error_for(text) == (
        "dockyard.yml:3: images.app.context: '..' contains '..'; give a path inside the repository"
    )


def test_an_unknown_base_image_is_named_with_its_line() -> None:
    text = """\
    images:
      base:
      app:
        dockerfile: Dockerfile
        from: bse
    """
    assert error_for(text) == "dockyard.yml:5: images.app.from: unknown image 'bse'"


def test_a_base_image_defined_after_its_child_is_refused() -> None:
    text = """\
    images:
      app:
        from: base
      base:
    """
    assert error_for(text) == (
        "dockyard.yml:3: images.app.from: image 'base' is defined after 'app'; a base comes first"
    )


def test_an_image_cannot_be_built_from_itself() -> None:
    assert error_for("images:\n  app: {from: app}\n") == (
        "dockyard.yml:2: images.app.from: image 'app' cannot be built from itself"
    )


@pytest.mark.parametrize("slug", ["", "Acme", "acme/web", "-acme"])
def test_a_base_from_another_project_needs_a_valid_slug(slug: str) -> None:
    assert error_for(f"images:\n  app: {{from: 'project:{slug}'}}\n") == (
        f"dockyard.yml:2: images.app.from: {slug!r} is not a project slug (e.g. project:acme-base)"
    )


def test_a_build_arg_with_an_invalid_name_is_refused() -> None:
    text = """\
    images:
      app:
        args:
          PYTHON-VERSION: "3.11"
    """
    assert error_for(text) == (
        "dockyard.yml:4: images.app.args.PYTHON-VERSION: 'PYTHON-VERSION' is not a variable name"
        " (letters, digits and '_', not starting with a digit)"
    )


@pytest.mark.parametrize(
    ("value", "found"),
    [("", "nothing"), ("~", "nothing"), ("[a]", "a list"), ("{a: b}", "a mapping")],
)
def test_a_build_arg_must_be_a_single_value(value: str, found: str) -> None:
    text = f"""\
    images:
      app:
        args:
          NAME: "web"
          PYTHON: {value}
    """
    assert error_for(text) == (
        f"dockyard.yml:5: images.app.args.PYTHON: expected a string, number or boolean, got {found}"
    )


def test_build_args_must_be_a_mapping() -> None:
    assert error_for("images:\n  app: {args: [PYTHON=3.11]}\n") == (
        "dockyard.yml:2: images.app.args: expected a mapping, got a list"
    )


# --- Errors: test -----------------------------------------------------------------------------


def test_a_test_section_without_a_command_is_refused_at_its_key() -> None:
    text = """\
    images: {app: }
    test:
      image: app
    """
    assert error_for(text) == "dockyard.yml:2: test.command: required (or test.steps)"


def test_an_empty_test_section_is_missing_its_command() -> None:
    assert (
        error_for("images: {app: }\ntest:\n")
        == "dockyard.yml:2: test.command: required (or test.steps)"
    )


@pytest.mark.parametrize(
    ("command", "key", "message"),
    [
        ("[]", "test.command", "must not be empty"),
        ("''", "test.command", "must not be empty"),
        ("'   '", "test.command", "must not be empty"),
        ("[pytest, 5]", "test.command[1]", "expected a string, got 5"),
        ("{run: pytest}", "test.command", "expected a string, got a mapping"),
        (
            "'pytest \"-q'",
            "test.command",
            "cannot split 'pytest \"-q' into words: No closing quotation",
        ),
    ],
)
def test_a_command_that_runs_nothing_is_refused(command: str, key: str, message: str) -> None:
    text = f"""\
    images: {{app: }}
    test:
      command: {command}
    """
    assert error_for(text) == f"dockyard.yml:3: {key}: {message}"


def test_a_test_image_must_be_defined() -> None:
    text = """\
    images: {app: }
    test:
      image: ap
      command: pytest
    """
    assert error_for(text) == "dockyard.yml:3: test.image: unknown image 'ap'"


def test_an_unknown_test_setting_is_named_with_the_allowed_ones() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      memory_limit: 1g
    """
    assert error_for(text) == (
        "dockyard.yml:4: test.memory_limit: unknown key (allowed: image, command, timeout, env,"
        " secrets, memory, cpus, pids, user, network, steps, reports, cache)"
    )


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("ten", "expected an integer, got 'ten'"),
        ("'600'", "expected an integer, got '600'"),
        ("true", "expected an integer, got true"),
        ("1.5", "expected an integer, got 1.5"),
        ("", "expected an integer, got nothing"),
        ("0", "must be from 1 to 86400, got 0"),
        ("86401", "must be from 1 to 86400, got 86401"),
    ],
)
def test_a_timeout_must_be_a_whole_number_of_seconds_up_to_a_day(
    timeout: str, message: str
) -> None:
    text = f"""\
    images: {{app: }}
    test:
      command: pytest
      timeout: {timeout}
    """
    assert error_for(text) == f"dockyard.yml:4: test.timeout: {message}"


def test_an_environment_variable_with_an_invalid_name_is_refused() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      env:
        1ST: a
    """
    assert error_for(text) == (
        "dockyard.yml:5: test.env.1ST: '1ST' is not a variable name (letters, digits and '_',"
        " not starting with a digit)"
    )


def test_an_environment_variable_without_a_value_is_refused() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      env:
        CI:
    """
    assert error_for(text) == (
        "dockyard.yml:5: test.env.CI: expected a string, number or boolean, got nothing"
    )


def test_secrets_must_be_a_list() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      secrets: NPM_TOKEN
    """
    assert error_for(text) == "dockyard.yml:4: test.secrets: expected a list, got 'NPM_TOKEN'"


def test_a_secret_with_an_invalid_name_is_refused() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      secrets:
        - NPM_TOKEN
        - npm-token
    """
    assert error_for(text) == (
        "dockyard.yml:6: test.secrets[1]: 'npm-token' is not a variable name (letters, digits"
        " and '_', not starting with a digit)"
    )


def test_a_secret_named_twice_is_refused() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      secrets:
        - NPM_TOKEN
        - NPM_TOKEN
    """
    assert error_for(text) == "dockyard.yml:6: test.secrets[1]: duplicate secret 'NPM_TOKEN'"


def test_a_secret_cannot_also_be_set_in_env() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      env: {NPM_TOKEN: x}
      secrets: [NPM_TOKEN]
    """
    assert error_for(text) == "dockyard.yml:5: test.secrets[0]: 'NPM_TOKEN' is also set in test.env"


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ("lots", "expected bytes or a size like '512m', got 'lots'"),
        ("512x", "expected bytes or a size like '512m', got '512x'"),
        ("1.5", "expected bytes or a size like '512m', got 1.5"),
        ("true", "expected bytes or a size like '512m', got true"),
        ("512", "512 bytes is below Docker's minimum of 6m; write e.g. 512m"),
        ("-1", "-1 bytes is below Docker's minimum of 6m; write e.g. 512m"),
        ("5m", "5242880 bytes is below Docker's minimum of 6m; write e.g. 512m"),
    ],
)
def test_memory_must_be_a_size_docker_accepts(memory: str, message: str) -> None:
    text = f"""\
    images: {{app: }}
    test:
      command: pytest
      memory: {memory}
    """
    assert error_for(text) == f"dockyard.yml:4: test.memory: {message}"


@pytest.mark.parametrize(
    ("cpus", "message"),
    [
        ("0", "must be more than 0 and at most 64, got 0"),
        ("-1", "must be more than 0 and at most 64, got -1"),
        ("64.5", "must be more than 0 and at most 64, got 64.5"),
        (".nan", "must be more than 0 and at most 64, got nan"),
        ("two", "expected a number, got 'two'"),
        ("true", "expected a number, got true"),
    ],
)
def test_cpus_must_be_a_positive_number_up_to_64(cpus: str, message: str) -> None:
    text = f"""\
    images: {{app: }}
    test:
      command: pytest
      cpus: {cpus}
    """
    assert error_for(text) == f"dockyard.yml:4: test.cpus: {message}"


def test_too_few_processes_are_refused() -> None:
    text = """\
    images: {app: }
    test:
      command: pytest
      pids: 8
    """
    assert error_for(text) == "dockyard.yml:4: test.pids: must be at least 16, got 8"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("'app user'", "'app user' is not a user (e.g. 1000, 1000:1000 or app)"),
        ("'1000:'", "'1000:' is not a user (e.g. 1000, 1000:1000 or app)"),
        ("[1000]", "expected a string, got a list"),
    ],
)
def test_a_user_docker_cannot_take_is_refused(user: str, message: str) -> None:
    text = f"""\
    images: {{app: }}
    test:
      command: pytest
      user: {user}
    """
    assert error_for(text) == f"dockyard.yml:4: test.user: {message}"


@pytest.mark.parametrize(
    ("network", "found"),
    [("'true'", "'true'"), ("'yes'", "'yes'"), ("yes", "yes"), ("on", "on"), ("1", "1")],
)
def test_network_must_be_a_real_boolean(network: str, found: str) -> None:
    text = f"""\
    images: {{app: }}
    test:
      command: pytest
      network: {network}
    """
    assert error_for(text) == f"dockyard.yml:4: test.network: expected true or false, got {found}"


# --- Errors: publish --------------------------------------------------------------------------


def test_a_publish_image_must_be_defined() -> None:
    assert error_for("images: {app: }\npublish:\n  image: web\n") == (
        "dockyard.yml:3: publish.image: unknown image 'web'"
    )


def test_an_unknown_publish_setting_is_named_with_the_allowed_ones() -> None:
    assert error_for("images: {app: }\npublish:\n  registry: x\n") == (
        "dockyard.yml:3: publish.registry: unknown key (allowed: image, repository, tags)"
    )


@pytest.mark.parametrize(
    "repository",
    [
        "Registry.example.com/team/app",
        "127.0.0.1:5000/Acme/web",
        "127.0.0.1:5000/acme/web:latest",
        "https://registry.example.com/team/app",
        "registry.example.com/team/app/",
        "registry.example.com//app",
        "registry.example.com/" + "a" * 250,
    ],
)
def test_a_repository_must_be_a_lowercase_docker_name_without_a_tag(repository: str) -> None:
    assert error_for(f"images: {{app: }}\npublish:\n  repository: '{repository}'\n") == (
        f"dockyard.yml:3: publish.repository: {repository!r} is not a lowercase image repository"
        " without a tag (e.g. registry.example.com/team/app)"
    )


@pytest.mark.parametrize(
    "repository",
    ["127.0.0.1:5000/acme/web", "registry.example.com/team/app", "acme/web", "localhost/a__b-c.d"],
)
def test_ordinary_repositories_are_accepted(repository: str) -> None:
    spec = parse_spec(f"images: {{app: }}\npublish: {{repository: '{repository}'}}\n")

    assert spec.publish.repository == repository


@pytest.mark.parametrize(
    ("tags", "key", "message"),
    [
        (
            "['{sha}', '{commit}']",
            "publish.tags[1]",
            "unknown placeholder {commit} (allowed: {sha}, {short_sha}, {branch}, {tag}, {run})",
        ),
        (
            "['release/{tag}']",
            "publish.tags[0]",
            "'release/{tag}' contains '/'; a docker tag allows only letters, digits, '_', '.'"
            " and '-'",
        ),
        ("['{sha']", "publish.tags[0]", "'{sha' has an unmatched brace"),
        ("['sha}']", "publish.tags[0]", "'sha}' has an unmatched brace"),
        ("['-{sha}']", "publish.tags[0]", "'-{sha}': a docker tag cannot start with '-'"),
        ("['{sha}', '{sha}']", "publish.tags[1]", "duplicate tag '{sha}'"),
        ("['']", "publish.tags[0]", "must not be empty"),
        ("[]", "publish.tags", "at least one tag is required"),
        ("'{sha}'", "publish.tags", "expected a list, got '{sha}'"),
        (
            "[{sha}]",
            "publish.tags[0]",
            'expected a string, got a mapping (quote templates: "{sha}")',
        ),
    ],
)
def test_a_tag_template_that_cannot_become_a_docker_tag_is_refused(
    tags: str, key: str, message: str
) -> None:
    text = f"""\
    images: {{app: }}
    publish:
      tags: {tags}
    """
    assert error_for(text) == f"dockyard.yml:3: {key}: {message}"


# --- Errors: deploy ---------------------------------------------------------------------------


def test_a_deploy_section_without_a_port_is_refused_at_its_key() -> None:
    text = """\
    images: {app: }
    deploy:
      health: /healthz
    """
    assert error_for(text) == "dockyard.yml:2: deploy.port: required"


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("0", "must be from 1 to 65535, got 0"),
        ("65536", "must be from 1 to 65535, got 65536"),
        ("'8000'", "expected an integer, got '8000'"),
        ("true", "expected an integer, got true"),
    ],
)
def test_a_port_must_be_a_tcp_port_number(port: str, message: str) -> None:
    text = f"""\
    images: {{app: }}
    deploy:
      port: {port}
    """
    assert error_for(text) == f"dockyard.yml:3: deploy.port: {message}"


def test_a_health_check_must_be_a_path() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      health: healthz
    """
    assert error_for(text) == (
        "dockyard.yml:4: deploy.health: 'healthz' must be a path starting with '/'"
    )


def test_an_unknown_deploy_setting_is_named_with_the_allowed_ones() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      instances: 2
    """
    assert error_for(text) == (
        "dockyard.yml:4: deploy.instances: unknown key (allowed: port, health, environments,"
        " release_command, release_timeout, watch, replicas)"
    )


def test_a_watch_for_every_environment_is_overridden_or_turned_off_by_one() -> None:
    spec = parse_spec(
        "images: {app: }\n"
        "deploy:\n"
        "  port: 80\n"
        "  replicas: 3\n"
        "  watch: {seconds: 300, max_error_rate: 0.02}\n"
        "  environments:\n"
        "    staging: {watch: false}\n"
        "    production: {after: staging, watch: {min_requests: 200}}\n"
        "    canary: {}\n"
    )
    assert spec.deploy is not None and spec.deploy.replicas == 3
    stored = spec_to_dict(spec)["deploy"]
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert watch_of_environment(stored, "staging") is None
    assert watch_of_environment(stored, "production") == WatchSpec(
        seconds=120, max_error_rate=0.05, min_requests=200
    )
    assert watch_of_environment(stored, "canary") == WatchSpec(
        seconds=300, max_error_rate=0.02, min_requests=50
    )


def test_a_release_stored_before_watches_and_replicas_has_neither() -> None:
    assert (
        watch_of_environment({"port": 80, "environments": [{"name": "staging"}]}, "staging") is None
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "watch: {max_error_rate: 5}",
            "deploy.watch.max_error_rate: must be a fraction of requests from 0 to below 1 "
            "(0.05 is 5%), got 5.0",
        ),
        ("watch: {seconds: 2}", "deploy.watch.seconds: must be from 10 to 86400, got 2"),
        ("watch: {window: 60}", "deploy.watch.window: unknown key"),
        ("replicas: 0", "deploy.replicas: must be from 1 to 16, got 0"),
        ("replicas: 40", "deploy.replicas: must be from 1 to 16, got 40"),
    ],
)
def test_a_bad_watch_or_replica_count_is_named(setting: str, message: str) -> None:
    assert message in error_for(f"images: {{app: }}\ndeploy:\n  port: 80\n  {setting}\n")


def test_watch_true_in_an_environment_is_refused_for_saying_nothing() -> None:
    text = "images: {app: }\ndeploy:\n  port: 80\n  environments:\n    staging: {watch: true}\n"
    assert "`watch: true` says nothing" in error_for(text)


def test_a_release_command_runs_once_per_deployment_with_its_own_timeout() -> None:
    spec = parse_spec(
        "images: {app: }\n"
        "deploy: {port: 80, release_command: ./manage.py migrate --noinput, release_timeout: 120}\n"
    )

    assert spec.deploy is not None
    assert spec.deploy.release_command == ("./manage.py", "migrate", "--noinput")
    assert spec.deploy.release_timeout == 120
    assert spec_from_dict(spec_to_dict(spec)) == spec


def test_a_release_timeout_without_a_release_command_is_refused() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      release_timeout: 60
    """
    assert error_for(text) == (
        "dockyard.yml:4: deploy.release_timeout: is only used with release_command"
    )


def test_a_spec_stored_before_release_commands_existed_still_reads() -> None:
    spec = parse_spec("images: {app: }\ndeploy: {port: 80}\n")
    data = spec_to_dict(spec)
    del data["deploy"]["release_command"], data["deploy"]["release_timeout"]

    assert spec_from_dict(data) == spec


def test_environments_must_be_a_mapping_of_names() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      environments: [staging]
    """
    assert error_for(text) == (
        "dockyard.yml:4: deploy.environments: expected a mapping, got a list"
    )


@pytest.mark.parametrize("name", ["Staging", "1st", "prod_eu", "a" * 33])
def test_an_environment_name_outside_the_allowed_characters_is_refused(name: str) -> None:
    text = f"""\
    images: {{app: }}
    deploy:
      port: 8000
      environments:
        {name}:
    """
    assert error_for(text) == (
        f"dockyard.yml:5: deploy.environments.{name}: environment name {name!r} must be 1 to 32"
        " lowercase letters, digits or '-', starting with a letter"
    )


def test_an_unknown_environment_setting_is_named_with_the_allowed_ones() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      environments:
        staging:
          url: https://staging.example.com
    """
    assert error_for(text) == (
        "dockyard.yml:6: deploy.environments.staging.url: unknown key"
        " (allowed: auto, branches, after, watch)"
    )


def test_an_environment_cannot_come_after_an_unknown_one() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      environments:
        staging:
        production: {after: stagin}
    """
    assert error_for(text) == (
        "dockyard.yml:6: deploy.environments.production.after: unknown environment 'stagin'"
    )


def test_an_environment_cannot_come_after_itself() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      environments:
        production: {after: production}
    """
    assert error_for(text) == (
        "dockyard.yml:5: deploy.environments.production.after: environment 'production'"
        " cannot come after itself"
    )


def test_environments_that_wait_for_each_other_in_a_cycle_are_refused() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      environments:
        qa: {auto: true}
        staging:
          after: production
        production:
          after: canary
        canary:
          after: staging
    """
    assert error_for(text) == (
        "dockyard.yml:7: deploy.environments.staging.after: forms a cycle:"
        " staging -> production -> canary -> staging"
    )


@pytest.mark.parametrize(
    ("branches", "key", "message"),
    [
        ("main", "branches", "expected a list, got 'main'"),
        ("[main, '']", "branches[1]", "must not be empty"),
        ("[main, 2024]", "branches[1]", "expected a string, got 2024"),
    ],
)
def test_branches_must_be_a_list_of_patterns(branches: str, key: str, message: str) -> None:
    text = f"""\
    images: {{app: }}
    deploy:
      port: 8000
      environments:
        staging: {{branches: {branches}}}
    """
    assert error_for(text) == f"dockyard.yml:5: deploy.environments.staging.{key}: {message}"


def test_auto_must_be_a_real_boolean() -> None:
    text = """\
    images: {app: }
    deploy:
      port: 8000
      environments:
        staging: {auto: "yes"}
    """
    assert error_for(text) == (
        "dockyard.yml:5: deploy.environments.staging.auto: expected true or false, got 'yes'"
    )
