"""What chat hears of deployments: a release its watch took back, and the operations."""

from typing import Any

import pytest

from releases.models import Deployment
from releases.states import DeploymentKind, WatchState
from tests.factories import (
    make_environment,
    make_project,
    make_release,
    make_succeeded_deployment,
)
from webhooks import notifications
from webhooks.models import NotificationEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    monkeypatch.setattr(
        notifications.dispatch,
        "queue_notification",
        lambda *, endpoint_id, payload: payloads.append(payload),
    )
    return payloads


def test_chat_hears_that_a_watch_took_a_release_back_with_its_numbers(
    sent: list[dict[str, Any]],
) -> None:
    project = make_project()
    NotificationEndpoint.objects.create(project=project, url="http://127.0.0.1:9/hook")
    staging = make_environment(project, "staging")
    one, two = make_release(project, 1), make_release(project, 2)
    watched = make_succeeded_deployment(staging, two)
    Deployment.objects.filter(pk=watched.pk).update(
        previous_release=one,
        watch_state=WatchState.ROLLED_BACK,
        watch_detail="21 of 100 requests answered 5xx (21.0%, more than the 5.0% allowed)",
    )

    assert notifications.notifications_for_deployment(deployment_id=watched.pk) == 1

    [payload] = sent
    assert payload["dockyard"]["event"] == "deployment.watch_rolled_back"
    assert payload["text"].startswith(
        f"⚠️ {project.slug} staging: release 2 is being rolled back by its watch: 21 of 100 "
        "requests answered 5xx (21.0%, more than the 5.0% allowed); back to release 1; "
        "auto-deploys to staging are paused until someone deploys"
    )


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (DeploymentKind.RESTART, "🔄 {slug} staging restarted (release 1) by dockyard"),
        (DeploymentKind.STOP, "⏹ {slug} staging stopped (release 1) by dockyard"),
        (DeploymentKind.START, "▶️ {slug} staging started (release 1) by dockyard"),
        (DeploymentKind.SCALE, "↔️ {slug} staging scaled to 3 per host (release 1) by dockyard"),
    ],
)
def test_chat_hears_of_each_operation_in_its_own_words(
    sent: list[dict[str, Any]], kind: str, said: str
) -> None:
    project = make_project()
    NotificationEndpoint.objects.create(project=project, url="http://127.0.0.1:9/hook")
    staging = make_environment(project, "staging")
    deployment = make_succeeded_deployment(staging, make_release(project, 1))
    Deployment.objects.filter(pk=deployment.pk).update(kind=kind, replicas=3)

    notifications.notifications_for_deployment(deployment_id=deployment.pk)

    assert sent[0]["text"].startswith(said.format(slug=project.slug))
