"""Chat-ops: carry out a chat command and answer in a few lines a bot can post, with links."""

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import reverse
from django.utils import timezone

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
from api.models import ChatIdentity
from api.slack_signature import SlackSignatureError, slack_request_verify
from audit.actors import Actor, chat_actor
from pipelines.models import PipelineRun
from projects.models import Project
from releases.access import can_deploy_to
from releases.models import Deployment, Environment, Release
from releases.services import (
    DeploymentRefused,
    deployment_request,
    environment_operate,
    environment_promote,
    environment_rollback,
    environment_scale,
)
from releases.states import DeploymentKind

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class ChatReply:
    text: str
    # Worth posting for the whole channel (an action, a status), or only for the asker.
    public: bool


@dataclass(frozen=True)
class SlackAnswer:
    status: int
    payload: dict[str, Any]


def chat_answer(*, text: str, user: User, actor: Actor) -> str:
    """The answer to one chat command typed by `user` (audited as `actor`)."""
    return chat_reply(command=parse_chat_command(text), user=user, actor=actor).text


def chat_reply(*, command: ChatCommand, user: User, actor: Actor) -> ChatReply:
    """Carry out a parsed command; never raises: every refusal is an answer.

    What it changes is audited as `actor`: the chat account and the user it acts as.
    """
    try:
        return _run(command, user, actor)
    except (DeploymentRefused, _Refused) as refusal:
        return ChatReply(f"refused: {refusal}", public=False)
    except Exception:
        logger.exception("chat command %r failed", command)
        return ChatReply("something went wrong on Dockyard's side; see its logs", public=False)


def slack_answer(
    *, signing_secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> SlackAnswer:
    """Slack's slash command: verify the request, run the command as the linked user."""
    if not signing_secret:
        return SlackAnswer(403, {"text": "Slack is not set up: DOCKYARD_SLACK_SIGNING_SECRET"})
    try:
        slack_request_verify(
            signing_secret=signing_secret,
            timestamp=timestamp,
            signature=signature,
            body=body,
            now=now,
        )
    except SlackSignatureError as error:
        return SlackAnswer(401, {"text": f"refused: {error}"})
    form = parse_qs(body.decode("utf-8", errors="replace"))
    slack_user = form.get("user_id", [""])[0]
    identity = (
        ChatIdentity.objects.select_related("user")
        .filter(provider="slack", external_id=slack_user)
        .first()
    )
    user: User = identity.user if identity else AnonymousUser()
    reply = chat_reply(
        command=parse_chat_command(form.get("text", [""])[0]),
        user=user,
        actor=chat_actor(provider="slack", external_id=slack_user, user=user),
    )
    return SlackAnswer(
        200,
        {"response_type": "in_channel" if reply.public else "ephemeral", "text": reply.text},
    )


class _Refused(Exception):
    pass


def _run(command: ChatCommand, user: User, actor: Actor) -> ChatReply:
    match command:
        case Help():
            return ChatReply(HELP_TEXT, public=False)
        case Unknown(reason=reason):
            return ChatReply(f"{reason}\n\n{HELP_TEXT}", public=False)
        case Status(project=slug):
            return ChatReply(_status(_project(slug)), public=True)
        case Runs(project=slug, limit=limit):
            project = _project(slug)
            runs = PipelineRun.objects.filter(project=project).order_by("-number")[:limit]
            lines = [_run_line(run) for run in runs] or [f"{project.slug} has no runs yet"]
            return ChatReply("\n".join(lines), public=True)
        case Deploy(project=slug, release=number, environment=name):
            environment = _environment(_project(slug), name, user)
            release = _release(environment.project, number)
            deployment = deployment_request(
                environment=environment, release=release, user=user, actor=actor
            )
            return ChatReply(_queued(deployment.kind, release, environment), public=True)
        case Promote(project=slug, release=number, environment=name):
            project = _project(slug)
            environment = _environment(project, name or _promotion_target(project), user)
            chosen = _release(project, number) if number else None
            deployment = environment_promote(
                environment=environment, release=chosen, user=user, actor=actor
            )
            return ChatReply(_queued("promote", deployment.release, environment), public=True)
        case Rollback(project=slug, environment=name):
            project = _project(slug)
            environment = _environment(project, name or _last_environment(project), user)
            deployment = environment_rollback(environment=environment, user=user, actor=actor)
            return ChatReply(_queued("rollback", deployment.release, environment), public=True)
        case Operate(action=action, project=slug, environment=name):
            environment = _environment(_project(slug), name, user)
            deployment = environment_operate(
                environment=environment, kind=DeploymentKind(action), user=user, actor=actor
            )
            return ChatReply(_operation_queued(deployment, environment), public=True)
        case Scale(project=slug, environment=name, replicas=replicas):
            environment = _environment(_project(slug), name, user)
            deployment = environment_scale(
                environment=environment, replicas=replicas, user=user, actor=actor
            )
            what = f"to {replicas} container{'s' if replicas > 1 else ''} per host"
            return ChatReply(_operation_queued(deployment, environment, what), public=True)
    raise AssertionError(f"unhandled chat command {command!r}")


def _status(project: Project) -> str:
    lines = []
    last = PipelineRun.objects.filter(project=project).order_by("-number").first()
    lines.append(_run_line(last) if last else f"{project.slug} has no runs yet")
    for environment in Environment.objects.filter(project=project).select_related(
        "current_release"
    ):
        release = environment.current_release
        serving = (
            f"release {release.number} ({release.commit_sha[:12]})" if release else "nothing yet"
        )
        lines.append(f"{environment.name}: {serving} — {_environment_link(environment)}")
    return "\n".join(lines)


def _run_line(run: PipelineRun) -> str:
    age = timezone.now() - run.created_at
    minutes = int(age.total_seconds() // 60)
    return (
        f"{run.project.slug} #{run.number} {run.status} — {run.ref.rsplit('/', 1)[-1]} "
        f"{run.commit_sha[:12]}, {minutes} min ago — "
        f"{settings.PUBLIC_URL}{reverse('run-detail', args=[run.pk])}"
    )


def _queued(kind: str, release: Release, environment: Environment) -> str:
    return (
        f"{kind} of {environment.project.slug} release {release.number} "
        f"({release.commit_sha[:12]}) to {environment.name} queued — "
        f"{_environment_link(environment)}"
    )


def _operation_queued(deployment: Deployment, environment: Environment, what: str = "") -> str:
    return (
        f"{deployment.kind} of {environment.project.slug} {environment.name}"
        f"{' ' + what if what else ''} (release {deployment.release.number}) queued — "
        f"{_environment_link(environment)}"
    )


def _environment_link(environment: Environment) -> str:
    return settings.PUBLIC_URL + reverse(
        "environment-detail", args=[environment.project.slug, environment.name]
    )


def _project(slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise _Refused(f"no project {slug!r}")
    return project


def _environment(project: Project, name: str, user: User) -> Environment:
    environment = Environment.objects.filter(project=project, name=name).first()
    if environment is None:
        raise _Refused(f"{project.slug} has no environment {name!r}")
    if not can_deploy_to(user, environment):
        raise _Refused(f"you may not deploy {project.slug} to {name} (link your chat account?)")
    return environment


def _release(project: Project, number: int) -> Release:
    release = Release.objects.filter(project=project, number=number).first()
    if release is None:
        raise _Refused(f"{project.slug} has no release {number}")
    return release


def _promotion_target(project: Project) -> str:
    """The environment a release is promoted to: the one that comes after another."""
    target = Environment.objects.filter(project=project, after__isnull=False).last()
    if target is None:
        raise _Refused(f"no environment of {project.slug} comes after another: name one")
    return target.name


def _last_environment(project: Project) -> str:
    """Rollbacks default to production, or else the project's last environment."""
    environments = Environment.objects.filter(project=project)
    if environments.filter(name="production").exists():
        return "production"
    last = environments.last()
    if last is None:
        raise _Refused(f"{project.slug} has no environments")
    return last.name
