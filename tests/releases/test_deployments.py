"""Releases move staging -> production behind the real HAProxy, with zero failed requests."""

import threading
import time

import docker
import pytest
from django.contrib.auth.models import User
from django.test import Client

from releases.executor import deployment_abandon
from releases.models import Deployment, Environment, HostDeployment
from releases.services import DeploymentRefused, deployment_request, environment_rollback
from releases.states import DeploymentStatus, HostStatus
from releases.tools import deploy_tools
from tests.load import LoadGenerator
from tests.releases.deployed_app import App, address, served, steps, wait_for_deployment

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

STEPS = ["queued", "preparing", "rolling", "finishing", "succeeded"]
HOST_STEPS = ["starting", "checking", "switching", "draining", "switched", "finished"]


pytestmark.append(pytest.mark.usefixtures("app_containers_removed"))


def test_a_release_goes_to_staging_by_itself_then_is_promoted_to_production(app: App) -> None:
    first = app.release("v1")
    staged = app.auto_deployment(first)
    assert staged.status == DeploymentStatus.SUCCEEDED, staged.failure_reason
    staging, production = app.environment("staging"), app.environment("production")
    assert served(staging) == "v1"

    promotion = wait_for_deployment(deployment_request(environment=production, release=first))
    assert promotion.status == DeploymentStatus.SUCCEEDED, promotion.failure_reason
    assert served(production) == "v1"

    second = app.release("v2")
    app.auto_deployment(second)
    assert (served(staging), served(production)) == ("v2", "v1")
    with LoadGenerator(production.frontend_port, address=address(production)) as load:
        time.sleep(0.3)
        promotion = wait_for_deployment(deployment_request(environment=production, release=second))
        time.sleep(0.3)
    assert promotion.status == DeploymentStatus.SUCCEEDED, promotion.failure_reason
    assert served(production) == "v2"
    assert load.result.failures == []
    assert load.result.bodies == {"v1", "v2"}
    assert steps(promotion) == STEPS
    assert steps(promotion, on_host=True) == HOST_STEPS
    assert promotion.previous_release == first


def test_a_release_that_fails_its_health_check_never_takes_traffic(
    app: App, docker_client: docker.DockerClient
) -> None:
    app.auto_deployment(app.release("v1"))
    # An operator's edit (admin): give up on an unhealthy release sooner than the default.
    Environment.objects.filter(project=app.project).update(health_timeout_seconds=4)
    staging = app.environment("staging")
    with LoadGenerator(staging.frontend_port, address=address(staging)) as load:
        broken = app.release("v2-broken", healthy=False)
        failed = app.auto_deployment(broken)
    assert failed.status == DeploymentStatus.FAILED
    assert failed.failure_reason.startswith(
        "host local: health check failed: not healthy within 4s (HAProxy on local: DOWN"
    )
    assert "L7STS 404 Not Found" in failed.failure_reason
    # The container's own last log lines: busybox httpd logging the health checks it failed.
    assert "response:404" in failed.container_log
    assert load.result.failures == []
    assert load.result.bodies == {"v1"}
    assert served(staging) == "v1"
    staging.refresh_from_db()
    assert staging.current_release.number == 1
    assert (
        docker_client.containers.list(
            all=True, sparse=True, filters={"label": f"dockyard.deployment={failed.pk}"}
        )
        == []
    )


def test_rollback_serves_the_previous_version_again_from_its_kept_container(app: App) -> None:
    app.auto_deployment(app.release("v1"))
    # A copy read before the last deployment: rollback must not trust what it says is live.
    staging = app.environment("staging")
    app.auto_deployment(app.release("v2"))
    assert served(staging) == "v2"

    with LoadGenerator(staging.frontend_port, address=address(staging)) as load:
        rollback = wait_for_deployment(environment_rollback(environment=staging))

    assert rollback.status == DeploymentStatus.SUCCEEDED, rollback.failure_reason
    assert rollback.kind == "rollback" and rollback.host_deployments.get().reused_container
    assert served(staging) == "v1"
    assert load.result.failures == []
    staging.refresh_from_db()
    assert staging.current_release.number == 1


def test_a_rollback_abandoned_after_restarting_a_kept_container_stops_it_and_keeps_it(
    app: App, docker_client: docker.DockerClient
) -> None:
    app.auto_deployment(app.release("v1"))
    v2 = app.auto_deployment(app.release("v2"))
    staging = app.environment("staging")
    kept = HostDeployment.objects.get(
        deployment__environment=staging,
        deployment__release__number=1,
        deployment__status=DeploymentStatus.SUCCEEDED,
    )
    # A rollback whose worker restarted the kept container, then was lost for good.
    docker_client.containers.get(kept.container_id).start()
    rollback = Deployment.objects.create(
        environment=staging,
        release=kept.deployment.release,
        previous_release=v2.release,
        kind="rollback",
        status=DeploymentStatus.ROLLING,
        slot=kept.deployment.slot,
    )
    HostDeployment.objects.create(
        deployment=rollback,
        host=kept.host,
        position=0,
        batch=0,
        status=HostStatus.CHECKING,
        container_id=kept.container_id,
        reused_container=True,
    )

    deployment_abandon(
        deployment=rollback, reason="its worker stopped answering", tools=deploy_tools()
    )

    rollback.refresh_from_db()
    assert rollback.status == DeploymentStatus.FAILED
    assert docker_client.containers.get(kept.container_id).status == "exited"
    assert served(staging) == "v2"
    # Kept as it was: the next rollback restarts it and serves v1.
    again = wait_for_deployment(environment_rollback(environment=staging))
    assert again.status == DeploymentStatus.SUCCEEDED, again.failure_reason
    assert again.host_deployments.get().container_id == kept.container_id
    assert served(staging) == "v1"


def test_promotion_is_refused_until_the_release_passed_staging(app: App) -> None:
    app.auto_deployment(app.release("v1"))
    Environment.objects.filter(project=app.project).update(health_timeout_seconds=2)
    broken = app.release("v2-broken", healthy=False)
    app.auto_deployment(broken)
    with pytest.raises(DeploymentRefused, match="release 2 has not succeeded in staging"):
        deployment_request(environment=app.environment("production"), release=broken)
    assert not Deployment.objects.filter(environment__name="production").exists()


def test_two_deployments_of_one_environment_never_run_at_once(app: App) -> None:
    first = app.release("v1")
    app.auto_deployment(first)
    production = app.environment("production")
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def request() -> None:
        from django.db import connection

        barrier.wait()
        try:
            outcomes.append(deployment_request(environment=production, release=first))
        except DeploymentRefused as refusal:
            outcomes.append(str(refusal))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted = [o for o in outcomes if isinstance(o, Deployment)]
    refused = [o for o in outcomes if isinstance(o, str)]
    assert len(accepted) == 1 and len(refused) == 1
    assert refused[0].startswith("production is busy with deployment")
    done = wait_for_deployment(accepted[0])
    assert steps(done) == STEPS


def test_the_environment_page_shows_who_deployed_what_from_which(app: App, client: Client) -> None:
    ada = User.objects.create_user("ada", is_staff=True)
    first = app.release("v1")
    app.auto_deployment(first)
    production = app.environment("production")
    wait_for_deployment(deployment_request(environment=production, release=first, user=ada))
    client.force_login(ada)

    page = client.get(f"/projects/{app.project.slug}/environments/production/").content.decode()

    assert production.frontend_url in page
    assert "release 1" in page and "ada" in page and "succeeded" in page
    assert "draining" in page  # the recorded steps


def test_a_user_who_may_not_deploy_is_refused(app: App) -> None:
    first = app.release("v1")
    app.auto_deployment(first)
    production = app.environment("production")
    production.deployers.add(User.objects.create_user("release-manager", is_staff=True))
    intern = User.objects.create_user("intern", is_staff=True)
    with pytest.raises(DeploymentRefused, match="intern may not deploy to production"):
        deployment_request(environment=production, release=first, user=intern)
