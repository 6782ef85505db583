"""Running one step of a project's tests in a throwaway, locked-down container."""

from dataclasses import dataclass

from builds.build_log import BuildLog
from builds.errors import BuildCancelled
from builds.junit import archived_folder
from infrastructure.docker_engine import ContainerEngine, ContainerLimits
from projects.spec import StepSpec, TestSpec


@dataclass(frozen=True)
class StepOutcome:
    exit_code: int | None
    # Why the step did not pass (None when it did), said of the step: "exited with status 1".
    failure: str | None
    # (folder asked for, tar archive of it): where the step's reports are.
    archives: tuple[tuple[str, bytes], ...]


def step_run(
    *,
    engine: ContainerEngine,
    image: str,
    step: StepSpec,
    test: TestSpec,
    secrets: dict[str, str],
    labels: dict[str, str],
    log: BuildLog,
    network_of: str | None = None,
    volumes: dict[str, str] | None = None,
) -> StepOutcome:
    """Run `step` in `image` under the test's limits; BuildCancelled if its run was cancelled
    meanwhile (the container is stopped within a second or two)."""
    log.line(f"$ {' '.join(step.command)}")
    outcome = log.stream(
        lambda: engine.run_throwaway(
            image=image,
            command=list(step.command),
            environment={**dict(test.env), **dict(step.env), **secrets},
            labels={**labels, "dockyard.step": step.name},
            timeout=step.timeout,
            limits=ContainerLimits(
                memory_bytes=test.memory_bytes,
                pids=test.pids,
                nano_cpus=int(test.cpus * 1_000_000_000),
                network=test.network,
                user=test.user,
                network_of=network_of,
            ),
            on_output=log.write,
            stop=log.stop_requested,
            volumes=volumes,
            archive_paths=tuple(dict.fromkeys(archived_folder(p) for p in test.reports)),
        )
    )
    if outcome.stopped:
        raise BuildCancelled()
    failure = None
    if outcome.timed_out:
        failure = f"ran longer than {step.timeout}s and was killed"
    elif outcome.oom_killed:
        failure = f"ran out of memory ({test.memory_bytes // 2**20} MiB) and was killed"
    elif outcome.exit_code != 0:
        failure = f"exited with status {outcome.exit_code}"
    return StepOutcome(exit_code=outcome.exit_code, failure=failure, archives=outcome.archives)
