from dataclasses import FrozenInstanceError

import pytest

from api.chatops_commands import (
    HELP_TEXT,
    ChatCommand,
    Deploy,
    Help,
    Operate,
    Promote,
    Rollback,
    Runs,
    Scale,
    Status,
    Unknown,
    parse_chat_command,
)

DEPLOY_USAGE = "usage: deploy <project> <release> to <environment>"
PROMOTE_USAGE = "usage: promote <project> [<release>] [to <environment>]"
ROLLBACK_USAGE = "usage: rollback <project> [<environment>]"
RUNS_USAGE = "usage: runs <project> [<limit>]"
STATUS_USAGE = "usage: status <project>"
RESTART_USAGE = "usage: restart <project> <environment>"
STOP_USAGE = "usage: stop <project> <environment>"
SCALE_USAGE = "usage: scale <project> <environment> [to] <replicas>"
COMMANDS = "help, status, runs, deploy, promote, rollback, restart, stop, start, scale"
SLUG_RULE = "(lowercase letters and digits, joined by single dots, dashes or underscores)"
ENVIRONMENT_RULE = "(a lowercase letter, then up to 31 lowercase letters, digits or dashes)"
RELEASE_RULE = "(a positive whole number, like 42 or #42)"


def reason(text: str) -> str:
    command = parse_chat_command(text)
    assert isinstance(command, Unknown), command
    assert command.text == text
    return command.reason


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "help", "HELP", "dockyard", "/dockyard help"])
def test_empty_text_and_help_ask_for_help(text: str) -> None:
    assert parse_chat_command(text) == Help()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status web", Status(project="web")),
        ("status my-app.v2_beta", Status(project="my-app.v2_beta")),
        ("status 0", Status(project="0")),
        ("runs web", Runs(project="web", limit=5)),
        ("runs web 1", Runs(project="web", limit=1)),
        ("runs web 50", Runs(project="web", limit=50)),
        ("runs web 007", Runs(project="web", limit=7)),
        ("deploy web 42 to staging", Deploy(project="web", release=42, environment="staging")),
        ("deploy web #42 to staging", Deploy(project="web", release=42, environment="staging")),
        (
            "deploy web release 42 to staging",
            Deploy(project="web", release=42, environment="staging"),
        ),
        (
            "deploy web release #42 to eu-west-2",
            Deploy(project="web", release=42, environment="eu-west-2"),
        ),
        ("promote web", Promote(project="web")),
        ("promote web 42", Promote(project="web", release=42)),
        ("promote web #42", Promote(project="web", release=42)),
        ("promote web release 42", Promote(project="web", release=42)),
        ("promote web to production", Promote(project="web", environment="production")),
        (
            "promote web 42 to production",
            Promote(project="web", release=42, environment="production"),
        ),
        ("rollback web", Rollback(project="web")),
        ("rollback web production", Rollback(project="web", environment="production")),
        ("rollback web to production", Rollback(project="web", environment="production")),
        (
            "restart web production",
            Operate(action="restart", project="web", environment="production"),
        ),
        ("stop web staging", Operate(action="stop", project="web", environment="staging")),
        ("START web staging", Operate(action="start", project="web", environment="staging")),
        ("scale web production 3", Scale(project="web", environment="production", replicas=3)),
        ("scale web production to 12", Scale(project="web", environment="production", replicas=12)),
    ],
)
def test_every_command_form_parses(text: str, expected: ChatCommand) -> None:
    assert parse_chat_command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "DEPLOY web Release 42 TO staging",
        "Deploy web 42 To staging",
        "  deploy   web\t42 \n to  staging  ",
        "/dockyard deploy web 42 to staging",
        "@dockyard deploy web 42 to staging",
        "dockyard deploy web 42 to staging",
        "@Dockyard deploy web 42 to staging",
    ],
)
def test_command_words_ignore_case_spacing_and_the_bots_name(text: str) -> None:
    assert parse_chat_command(text) == Deploy(project="web", release=42, environment="staging")


def test_the_bots_name_is_dropped_only_once() -> None:
    assert reason("dockyard dockyard status web") == (
        f'unknown command "dockyard"; commands: {COMMANDS}'
    )


def test_the_largest_release_a_database_can_hold_is_accepted() -> None:
    assert parse_chat_command("promote web 2147483647") == Promote(project="web", release=2**31 - 1)


def test_an_environment_name_of_32_characters_is_accepted() -> None:
    name = "e" * 32
    assert parse_chat_command(f"rollback web {name}") == Rollback(project="web", environment=name)


def test_an_unknown_command_lists_the_commands() -> None:
    assert reason("frobnicate web") == (f'unknown command "frobnicate"; commands: {COMMANDS}')


@pytest.mark.parametrize(
    ("text", "expected_reason"),
    [
        ("status", f"missing <project>; {STATUS_USAGE}"),
        ("runs", f"missing <project>; {RUNS_USAGE}"),
        ("deploy", f"missing <project>; {DEPLOY_USAGE}"),
        ("deploy web", f"missing <release>; {DEPLOY_USAGE}"),
        ("deploy web release", f"missing <release>; {DEPLOY_USAGE}"),
        ("deploy web 42", f'missing "to <environment>"; {DEPLOY_USAGE}'),
        ("deploy web 42 to", f"missing <environment>; {DEPLOY_USAGE}"),
        ("promote", f"missing <project>; {PROMOTE_USAGE}"),
        ("promote web release", f"missing <release>; {PROMOTE_USAGE}"),
        ("promote web to", f"missing <environment>; {PROMOTE_USAGE}"),
        ("promote web 42 to", f"missing <environment>; {PROMOTE_USAGE}"),
        ("rollback", f"missing <project>; {ROLLBACK_USAGE}"),
        ("rollback web to", f"missing <environment>; {ROLLBACK_USAGE}"),
    ],
)
def test_a_missing_argument_names_it_and_the_expected_form(text: str, expected_reason: str) -> None:
    assert reason(text) == expected_reason


@pytest.mark.parametrize(
    ("text", "expected_reason"),
    [
        ("help me", 'unexpected extra words "me"; usage: help'),
        ("status web now", f'unexpected extra words "now"; {STATUS_USAGE}'),
        ("runs web 5 please", f'unexpected extra words "please"; {RUNS_USAGE}'),
        (
            "deploy web 42 to staging right now",
            f'unexpected extra words "right now"; {DEPLOY_USAGE}',
        ),
        ("promote web 42 production", f'unexpected extra words "production"; {PROMOTE_USAGE}'),
        (
            "promote web 42 to production today",
            f'unexpected extra words "today"; {PROMOTE_USAGE}',
        ),
        ("rollback web production now", f'unexpected extra words "now"; {ROLLBACK_USAGE}'),
    ],
)
def test_extra_words_are_named(text: str, expected_reason: str) -> None:
    assert reason(text) == expected_reason


@pytest.mark.parametrize(
    ("text", "expected_reason"),
    [
        ("status Web", f'project slugs are lowercase: "Web" should be "web"; {STATUS_USAGE}'),
        (
            "deploy MY-App 42 to staging",
            f'project slugs are lowercase: "MY-App" should be "my-app"; {DEPLOY_USAGE}',
        ),
        ("status web!", f'"web!" is not a project slug {SLUG_RULE}; {STATUS_USAGE}'),
        ("status -web", f'"-web" is not a project slug {SLUG_RULE}; {STATUS_USAGE}'),
        ("status web..app", f'"web..app" is not a project slug {SLUG_RULE}; {STATUS_USAGE}'),
        ("rollback web_", f'"web_" is not a project slug {SLUG_RULE}; {ROLLBACK_USAGE}'),
        ("runs wéb", f'"wéb" is not a project slug {SLUG_RULE}; {RUNS_USAGE}'),
    ],
)
def test_a_project_that_is_not_a_slug_is_refused(text: str, expected_reason: str) -> None:
    assert reason(text) == expected_reason


@pytest.mark.parametrize("release", ["0", "#0", "-1", "4.2", "42a", "##42", "+42", "٤٢", "v42"])
def test_a_release_that_is_not_a_positive_whole_number_is_refused(release: str) -> None:
    assert reason(f"deploy web {release} to staging") == (
        f'"{release}" is not a release number {RELEASE_RULE}; {DEPLOY_USAGE}'
    )


def test_a_release_larger_than_the_database_can_hold_is_refused() -> None:
    assert reason("promote web 2147483648") == (
        f'"2147483648" is not a release number {RELEASE_RULE}; {PROMOTE_USAGE}'
    )


def test_a_release_of_thousands_of_digits_is_refused_without_raising() -> None:
    # int() raises ValueError past 4300 digits; the parser must not get that far.
    digits = "9" * 5000
    assert reason(f"promote web {digits}") == (
        f'"{digits}" is not a release number {RELEASE_RULE}; {PROMOTE_USAGE}'
    )


def test_deploy_without_to_says_where_it_was_expected() -> None:
    assert reason("deploy web 42 staging") == (
        f'expected "to" after the release, not "staging"; {DEPLOY_USAGE}'
    )


def test_deploy_without_a_release_refuses_the_word_in_its_place() -> None:
    assert reason("deploy web to staging") == (
        f'"to" is not a release number {RELEASE_RULE}; {DEPLOY_USAGE}'
    )


def test_promote_with_an_environment_but_no_to_suggests_the_to() -> None:
    assert reason("promote web production") == (
        f'"production" is not a release number; to name the environment say "to production"; '
        f"{PROMOTE_USAGE}"
    )


def test_promote_with_a_word_that_is_neither_release_nor_environment_refuses_it() -> None:
    assert reason("promote web 4x2") == (
        f'"4x2" is not a release number {RELEASE_RULE}; {PROMOTE_USAGE}'
    )


@pytest.mark.parametrize(
    ("text", "expected_reason"),
    [
        (
            "deploy web 42 to Staging",
            f'environment names are lowercase: "Staging" should be "staging"; {DEPLOY_USAGE}',
        ),
        (
            "promote web to PRODUCTION",
            f'environment names are lowercase: "PRODUCTION" should be "production"; '
            f"{PROMOTE_USAGE}",
        ),
        (
            "rollback web 41",
            f'"41" is not an environment name {ENVIRONMENT_RULE}; {ROLLBACK_USAGE}',
        ),
        (
            "rollback web prod_eu",
            f'"prod_eu" is not an environment name {ENVIRONMENT_RULE}; {ROLLBACK_USAGE}',
        ),
        (
            f"deploy web 42 to {'e' * 33}",
            f'"{"e" * 33}" is not an environment name {ENVIRONMENT_RULE}; {DEPLOY_USAGE}',
        ),
    ],
)
def test_an_environment_that_is_not_a_name_is_refused(text: str, expected_reason: str) -> None:
    assert reason(text) == expected_reason


@pytest.mark.parametrize("limit", ["0", "51", "-1", "five", "#5", "1000", "2.5"])
def test_a_runs_limit_outside_1_to_50_is_refused(limit: str) -> None:
    assert reason(f"runs web {limit}") == (
        f'the limit must be a whole number from 1 to 50, not "{limit}"; {RUNS_USAGE}'
    )


def test_unknown_keeps_the_text_exactly_as_sent() -> None:
    command = parse_chat_command("  @dockyard  status Web  ")
    assert command == Unknown(
        text="  @dockyard  status Web  ",
        reason=f'project slugs are lowercase: "Web" should be "web"; {STATUS_USAGE}',
    )


def test_commands_are_frozen_values() -> None:
    command = parse_chat_command("status web")
    assert isinstance(command, Status)
    with pytest.raises(FrozenInstanceError):
        command.project = "other"  # type: ignore[misc]
    assert command == Status(project="web")
    assert hash(command) == hash(Status(project="web"))


def test_the_help_text_shows_every_command_with_an_example_that_parses() -> None:
    examples = [
        "status web",
        "runs web 10",
        "deploy web 42 to staging",
        "promote web",
        "promote web 42 to production",
        "rollback web",
        "restart web production",
        "stop web staging",
        "start web staging",
        "scale web production 3",
    ]
    for example in examples:
        assert f"`{example}`" in HELP_TEXT
        assert not isinstance(parse_chat_command(example), Unknown)
    for command in COMMANDS.split(", "):
        assert f"`{command}" in HELP_TEXT


@pytest.mark.parametrize(
    ("text", "expected_reason"),
    [
        ("restart web", f"missing <environment>; {RESTART_USAGE}"),
        ("stop", f"missing <project>; {STOP_USAGE}"),
        ("restart web production now", f'unexpected extra words "now"; {RESTART_USAGE}'),
        ("scale web production", f"missing <replicas>; {SCALE_USAGE}"),
        ("scale web production to", f"missing <replicas>; {SCALE_USAGE}"),
        ("scale web production 3 please", f'unexpected extra words "please"; {SCALE_USAGE}'),
    ],
)
def test_operations_name_what_is_missing_or_extra(text: str, expected_reason: str) -> None:
    assert reason(text) == expected_reason


@pytest.mark.parametrize("replicas", ["0", "three", "-1", "1000", "2.5", "\u0663"])
def test_a_number_of_replicas_that_is_not_a_positive_whole_number_is_refused(
    replicas: str,
) -> None:
    assert reason(f"scale web production {replicas}") == (
        f'"{replicas}" is not a number of replicas (a whole number, like 3); {SCALE_USAGE}'
    )
