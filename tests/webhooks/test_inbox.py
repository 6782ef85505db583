"""The inbox: GitLab's token, de-duplication, limits, filters, superseded runs, replays."""

import json
import logging
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from pipelines.models import PipelineRun
from pipelines.services import do_run_transition
from projects.models import Project
from tests.factories import fixture_bytes, github_headers, make_project
from webhooks.models import Delivery
from webhooks.services import deliveries_unacted, delivery_act

pytestmark = pytest.mark.django_db

SECRET = "It's a Secret to Everybody"
GITLAB_PUSH = fixture_bytes("gitlab-push.json")


@pytest.fixture
def gitlab_project() -> Project:
    return make_project(
        repository_url="git@example.com:mike/diaspora.git", forge="gitlab", webhook_secret=SECRET
    )


@pytest.fixture
def github_project() -> Project:
    return make_project(
        repository_url="https://github.com/binkkatal/sample_app.git", webhook_secret=SECRET
    )


def gitlab_post(client: Client, body: bytes = GITLAB_PUSH, **headers: str) -> object:
    sent = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}
    sent.update(headers)
    return client.post(
        "/webhooks/gitlab/",
        data=body,
        content_type="application/json",
        headers={k: v for k, v in sent.items() if v},
    )


def github_post(client: Client, payload: dict, **headers: str) -> object:
    body = json.dumps(payload).encode()
    sent = github_headers(secret=SECRET, body=body)
    sent.update(headers)
    return client.post(
        "/webhooks/github/", data=body, content_type="application/json", headers=sent
    )


def push_payload(
    *, ref: str = "refs/heads/master", sha: str = "a" * 40, message: str = "x"
) -> dict:
    payload = json.loads(fixture_bytes("github-push.json"))
    payload.update(ref=ref, after=sha)
    payload["head_commit"].update(id=sha, message=message)
    return payload


def test_a_gitlab_token_that_does_not_match_is_refused_and_nothing_stored(
    client: Client, gitlab_project: Project
) -> None:
    response = gitlab_post(client, **{"X-Gitlab-Token": "wrong", "Idempotency-Key": "k1"})
    assert response.status_code == 401
    assert (
        response.json()["error"]
        == "X-Gitlab-Token does not match: check the webhook's secret token"
    )
    assert not Delivery.objects.exists()


def test_a_gitlab_delivery_without_a_token_is_refused(
    client: Client, gitlab_project: Project
) -> None:
    response = gitlab_post(client, **{"X-Gitlab-Token": "", "Idempotency-Key": "k1"})
    assert response.status_code == 401
    assert "missing header X-Gitlab-Token" in response.json()["error"]


def test_gitlab_redeliveries_are_recognised_by_idempotency_key_then_event_uuid(
    client: Client, gitlab_project: Project
) -> None:
    first = gitlab_post(client, **{"Idempotency-Key": "retry-1", "X-Gitlab-Event-UUID": "e-1"})
    again = gitlab_post(client, **{"Idempotency-Key": "retry-1", "X-Gitlab-Event-UUID": "e-2"})
    older = gitlab_post(client, **{"X-Gitlab-Event-UUID": "e-3"})
    older_again = gitlab_post(client, **{"X-Gitlab-Event-UUID": "e-3"})
    assert again.json() == first.json()
    assert older_again.json() == older.json()
    assert Delivery.objects.count() == 2
    assert list(Delivery.objects.order_by("id").values_list("delivery_id", flat=True)) == [
        "retry-1",
        "e-3",
    ]


def test_a_gitlab_delivery_without_an_id_header_is_a_400_naming_them(
    client: Client, gitlab_project: Project
) -> None:
    response = gitlab_post(client)
    assert response.status_code == 400
    assert response.json()["error"] == "missing header Idempotency-Key or X-Gitlab-Event-UUID"


def test_a_github_project_does_not_take_gitlab_deliveries(client: Client) -> None:
    make_project(repository_url="git@example.com:mike/diaspora.git", webhook_secret=SECRET)
    response = gitlab_post(client, **{"Idempotency-Key": "k"})
    assert response.status_code == 404
    assert (
        response.json()["error"]
        == "no GitLab project for repository http://example.com/mike/diaspora.git"
    )


def test_a_project_without_a_secret_refuses_every_delivery(
    client: Client, github_project: Project
) -> None:
    Project.objects.filter(pk=github_project.pk).update(webhook_secret="")
    body = fixture_bytes("github-push.json")
    # Even a delivery "signed" with the empty secret.
    response = client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(secret="", body=body),
    )
    assert response.status_code == 401
    assert (
        response.json()["error"] == f"project {github_project.slug} has no webhook secret; set one"
    )
    assert not Delivery.objects.exists()


def test_a_body_over_25_mb_is_a_413(client: Client, github_project: Project) -> None:
    body = b'{"padding": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    response = client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(secret=SECRET, body=body),
    )
    assert response.status_code == 413


def test_a_missing_delivery_header_is_a_400_naming_it(
    client: Client, github_project: Project
) -> None:
    response = github_post(client, push_payload(), **{"X-GitHub-Delivery": ""})
    assert response.status_code == 400
    assert response.json()["error"] == "missing header X-GitHub-Delivery"


def test_skip_ci_in_the_head_commit_message_is_recorded_and_builds_nothing(
    client: Client, github_project: Project
) -> None:
    response = github_post(client, push_payload(message="Fix typo [skip ci]"))
    assert response.status_code == 202
    assert response.json()["message"] == "skipped: the head commit message asks to skip CI"
    assert not PipelineRun.objects.exists()
    assert Delivery.objects.get().outcome == "skipped: the head commit message asks to skip CI"


def test_branch_and_tag_filters_decide_which_pushes_run(
    client: Client, github_project: Project
) -> None:
    Project.objects.filter(pk=github_project.pk).update(
        branch_filter="main release/*", tag_filter="v*"
    )
    outcomes = [
        github_post(client, push_payload(ref=ref, sha=sha)).json()["message"]
        for ref, sha in [
            ("refs/heads/wip", "1" * 40),
            ("refs/heads/release/1.2", "2" * 40),
            ("refs/tags/nightly", "3" * 40),
            ("refs/tags/v1.2.0", "4" * 40),
        ]
    ]
    assert outcomes == [
        "skipped: branch 'wip' matches none of the project's branch filters (main release/*)",
        "run #1 queued for 222222222222",
        "skipped: tag 'nightly' matches none of the project's tag filters (v*)",
        "run #2 queued for 444444444444",
    ]


def test_a_newer_push_to_a_branch_cancels_its_older_unfinished_runs(
    client: Client, github_project: Project
) -> None:
    github_post(client, push_payload(sha="1" * 40))
    first = PipelineRun.objects.get(commit_sha="1" * 40)
    do_run_transition(run=first, to="running")
    github_post(client, push_payload(ref="refs/heads/other", sha="2" * 40))

    answer = github_post(client, push_payload(sha="3" * 40)).json()["message"]

    assert answer == "run #3 queued for 333333333333; cancelled #1"
    first.refresh_from_db()
    assert first.status == "cancelled"
    assert first.events.filter(stage=None).last().reason == "superseded by #3"
    assert PipelineRun.objects.get(commit_sha="2" * 40).status == "queued"


def test_superseding_can_be_turned_off(client: Client, github_project: Project) -> None:
    Project.objects.filter(pk=github_project.pk).update(cancel_superseded=False)
    github_post(client, push_payload(sha="1" * 40))
    github_post(client, push_payload(sha="2" * 40))
    assert set(PipelineRun.objects.values_list("status", flat=True)) == {"queued"}


def test_a_stored_delivery_can_be_replayed_as_a_new_one(
    client: Client, github_project: Project
) -> None:
    Project.objects.filter(pk=github_project.pk).update(branch_filter="main")
    github_post(client, push_payload(ref="refs/heads/master"))
    original = Delivery.objects.get()
    assert original.outcome.startswith("skipped:")
    Project.objects.filter(pk=github_project.pk).update(branch_filter="*")

    out = StringIO()
    call_command("replaydelivery", str(original.pk), stdout=out)

    replay = Delivery.objects.exclude(pk=original.pk).get()
    assert replay.replay_of == original
    assert replay.outcome == "run #1 queued for aaaaaaaaaaaa"
    assert f"replayed delivery {original.pk} as {replay.pk}" in out.getvalue()


def test_a_delivery_stored_but_never_acted_on_is_acted_on_later_exactly_once(
    github_project: Project,
) -> None:
    body = json.dumps(push_payload()).encode()
    # As if the web process died right after storing it.
    stored = Delivery.objects.create(
        forge="github",
        delivery_id=str(uuid.uuid4()),
        event="push",
        project=github_project,
        headers={"Content-Type": "application/json"},
        body=body,
    )
    Delivery.objects.filter(pk=stored.pk).update(received_at=stored.received_at.replace(year=2000))
    assert deliveries_unacted() == [stored]

    call_command("replaydelivery", "--unacted", stdout=StringIO())
    delivery_act(delivery_id=stored.pk)

    stored.refresh_from_db()
    assert stored.outcome == "run #1 queued for aaaaaaaaaaaa"
    assert PipelineRun.objects.count() == 1
    assert deliveries_unacted() == []


def test_no_log_line_holds_a_secret_a_token_or_a_signature(
    client: Client,
    github_project: Project,
    gitlab_project: Project,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.dumps(push_payload()).encode()
    good = github_headers(secret=SECRET, body=body)
    client.post("/webhooks/github/", data=body, content_type="application/json", headers=good)
    bad = github_headers(secret="a-wrong-secret-value", body=body)
    client.post("/webhooks/github/", data=body, content_type="application/json", headers=bad)
    gitlab_post(client, **{"Idempotency-Key": "k", "X-Gitlab-Token": "gl-wrong-token-value"})
    gitlab_post(client, **{"Idempotency-Key": "k2"})

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "queued" in logged  # the log is there, only without secrets
    for secret in (
        SECRET,
        good["X-Hub-Signature-256"],
        bad["X-Hub-Signature-256"],
        "gl-wrong-token-value",
    ):
        assert secret not in logged
        assert secret[7:] not in logged  # nor the bare hex of a signature


def test_a_payload_with_a_nul_character_is_refused_and_nothing_stored(
    client: Client, github_project: Project
) -> None:
    response = github_post(client, push_payload(ref="refs/heads/a\x00b"))
    assert response.status_code == 400
    assert response.json()["error"] == "malformed body: it contains NUL characters"
    assert not Delivery.objects.exists()
