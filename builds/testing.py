"""Running a project's tests in a throwaway, locked-down container."""

from builds.build_log import BuildLog
from builds.errors import BuildCancelled, BuildFailure
from infrastructure.docker_engine import ContainerEngine, ContainerLimits
from projects.spec import TestSpec


def tests_run(
    *,
    engine: ContainerEngine,
    image: str,
    test: TestSpec,
    secrets: dict[str, str],
    labels: dict[str, str],
    log: BuildLog,
) -> None:
    """Run `test.command` in `image`; BuildFailure says why it did not pass, BuildCancelled
    that its run was cancelled meanwhile (the container is stopped within a second or two)."""
    log.line(f"$ {' '.join(test.command)}")
    outcome = log.stream(
        lambda: engine.run_throwaway(
            image=image,
            command=list(test.command),
            environment={**dict(test.env), **secrets},
            labels=labels,
            timeout=test.timeout,
            limits=ContainerLimits(
                memory_bytes=test.memory_bytes,
                pids=test.pids,
                nano_cpus=int(test.cpus * 1_000_000_000),
                network=test.network,
                user=test.user,
            ),
            on_output=log.write,
            stop=log.stop_requested,
        )
    )
    if outcome.stopped:
        raise BuildCancelled()
    if outcome.timed_out:
        raise BuildFailure(f"the test ran longer than {test.timeout}s and was killed")
    if outcome.oom_killed:
        raise BuildFailure(
            f"the test container ran out of memory ({test.memory_bytes // 2**20} MiB) "
            "and was killed"
        )
    if outcome.exit_code != 0:
        raise BuildFailure(f"the test command exited with status {outcome.exit_code}")
