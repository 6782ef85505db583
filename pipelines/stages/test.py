"""The test stage: the project's test steps in throwaway, locked-down containers, next to its
services, their JUnit reports read back and kept case by case.

Steps run in order, a parallel group side by side; each has a status, its time and a section
of its own in the log. The first step that fails (in the order the file gives) fails the run,
naming the step; the steps after its group do not run.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import groupby

from django.db import connection
from django.utils import timezone

from builds.caching import cache_volumes
from builds.errors import BuildCancelled
from builds.junit import ReportRefused, junit_cases, report_files
from builds.service_containers import TestNamespace, services_running
from builds.testing import StepOutcome, step_run
from infrastructure.docker_engine import ContainerEngine
from pipelines.execution import StageFailure, StageTools
from pipelines.models import PipelineRun, StepStatus, TestCase, TestStep
from pipelines.stage_log import SectionLog, StageLog
from pipelines.stages.images import (
    run_candidates_pushed_beside,
    run_labels,
    run_layer_image,
    run_spec,
)
from projects.selectors import project_secrets
from projects.services import project_spec_policy
from projects.spec import (
    PipelineSpec,
    StepSpec,
    TestSpec,
    policy_refusal_of_service,
    policy_refusal_of_test,
    steps_of,
)


@dataclass(frozen=True)
class _Plan:
    test: TestSpec
    steps: tuple[StepSpec, ...]
    # The image id each step runs, by step name, and its registry reference (the candidate);
    # each service's image id, by service name.
    step_images: dict[str, str]
    step_references: dict[str, str]
    service_images: dict[str, str]
    secrets: dict[str, str]
    volumes: dict[str, str]


def test_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    spec = run_spec(run)
    test = spec.test
    if test is None:
        return
    _policy_check(run, spec, test)
    secrets = project_secrets(run.project, test.secrets)
    missing = sorted(set(test.secrets) - set(secrets))
    if missing:
        raise StageFailure(f"test.secrets: not set for this project: {', '.join(missing)}")
    with tools.engine() as engine, run_candidates_pushed_beside(run, spec, log, engine):
        steps = steps_of(test)
        references = dict(run.layers.values_list("name", "reference"))
        plan = _Plan(
            test=test,
            steps=steps,
            step_images={
                step.name: run_layer_image(run, spec, step.image, log, engine) for step in steps
            },
            # "" while the image is pushed beside the tests; its steps' records get it after.
            step_references={step.name: references[step.image] for step in steps},
            service_images=_service_images(run, spec, log, engine),
            secrets=secrets,
            volumes=cache_volumes(
                engine=engine, project=run.project, ref=run.ref, paths=test.cache
            ),
        )
        failures = log.stream(lambda: _steps_run(run, spec, plan, log, engine, tools))
    if failures:
        name, reason = failures[0]
        # The one-step form speaks of the test command, as it always has.
        raise StageFailure(
            f"the test command {reason}" if not test.steps else f"step {name} {reason}"
        )


def _policy_check(run: PipelineRun, spec: PipelineSpec, test: TestSpec) -> None:
    # Checked when dockyard.yml was read, and again here: an operator may have lowered a
    # ceiling or taken the network back since.
    policy = project_spec_policy(run.project)
    if (refusal := policy_refusal_of_test(test, policy)) is not None:
        field, message = refusal
        raise StageFailure(f"test.{field}: {message}")
    for service in spec.services:
        if (refusal := policy_refusal_of_service(service, policy)) is not None:
            field, message = refusal
            raise StageFailure(f"services.{service.name}.{field}: {message}")


def _service_images(
    run: PipelineRun, spec: PipelineSpec, log: StageLog, engine: ContainerEngine
) -> dict[str, str]:
    """Each service's image on this engine: an image of the stack, or a reference pulled."""
    stack = {image.name for image in spec.images}
    images: dict[str, str] = {}
    for service in spec.services:
        if service.image in stack:
            images[service.name] = run_layer_image(run, spec, service.image, log, engine)
        else:
            images[service.name] = engine.ensure_image(reference=service.image, on_output=log.write)
    return images


def _steps_run(
    run: PipelineRun,
    spec: PipelineSpec,
    plan: _Plan,
    log: StageLog,
    engine: ContainerEngine,
    tools: StageTools,
) -> list[tuple[str, str]]:
    """Run the steps (in this helper thread, and a thread per step of a parallel group);
    return the failed ones' (name, reason), in the file's order."""
    labels = run_labels(run, role="test")
    services = (
        services_running(
            engine=engine,
            services=spec.services,
            images=plan.service_images,
            labels=labels,
            log=log.section("services"),
        )
        if spec.services
        else nullcontext(None)
    )
    failures: list[tuple[str, str]] = []
    try:
        with services as namespace:
            for _, grouped in groupby(enumerate(plan.steps), key=lambda item: item[1].group):
                group = list(grouped)
                if len(group) == 1:
                    position, step = group[0]
                    outcomes = [_step(run, plan, position, step, log, engine, labels, namespace)]
                else:
                    outcomes = _side_by_side(run, plan, group, log, tools, labels, namespace)
                failures += [(name, reason) for name, reason in outcomes if reason is not None]
                if failures:
                    break
    finally:
        # Threads of this stage keep their own connections; this one is done with its own.
        connection.close()
    return failures


def _side_by_side(
    run: PipelineRun,
    plan: _Plan,
    group: list[tuple[int, StepSpec]],
    log: StageLog,
    tools: StageTools,
    labels: dict[str, str],
    namespace: TestNamespace | None,
) -> list[tuple[str, str | None]]:
    results: dict[int, tuple[str, str | None]] = {}
    cancelled: list[BuildCancelled] = []

    def one(position: int, step: StepSpec) -> None:
        try:
            with tools.engine() as engine:
                results[position] = _step(run, plan, position, step, log, engine, labels, namespace)
        except BuildCancelled as stop:
            cancelled.append(stop)
        except Exception as error:
            results[position] = (step.name, f"internal error: {error!r}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=one, args=item, name=f"step-{item[1].name}") for item in group
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if cancelled:
        raise cancelled[0]
    return [results[position] for position, _ in group]


def _step(
    run: PipelineRun,
    plan: _Plan,
    position: int,
    step: StepSpec,
    log: StageLog,
    engine: ContainerEngine,
    labels: dict[str, str],
    namespace: TestNamespace | None,
) -> tuple[str, str | None]:
    """Run one step and record it; (its name, why it failed or None)."""
    section = log.section(step.name)
    with _recorded(run, step, position, image=plan.step_references[step.name]) as record:
        outcome = step_run(
            engine=engine,
            image=plan.step_images[step.name],
            step=step,
            test=plan.test,
            secrets=plan.secrets,
            labels=labels,
            log=section,
            network_of=namespace.holder_id if namespace else None,
            volumes=plan.volumes,
        )
        _reports_keep(run, record, plan.test, outcome, section)
        record.exit_code, record.failure_reason = outcome.exit_code, outcome.failure or ""
    if outcome.failure:
        section.line(f"step {step.name} {outcome.failure}")
    return step.name, outcome.failure


@contextmanager
def _recorded(run: PipelineRun, step: StepSpec, position: int, *, image: str) -> Iterator[TestStep]:
    """A TestStep row from the step's start; settled by how the block ends."""
    record, _ = TestStep.objects.update_or_create(
        run=run,
        name=step.name,
        defaults={
            "position": position,
            "group": step.group,
            "image": image,
            "status": StepStatus.RUNNING,
            "started_at": timezone.now(),
            "finished_at": None,
            "exit_code": None,
            "failure_reason": "",
        },
    )
    # A lost attempt may have read reports for this step already.
    TestCase.objects.filter(step=record).delete()
    try:
        yield record
    except BuildCancelled:
        record.status = StepStatus.CANCELLED
        raise
    except Exception as error:
        record.status, record.failure_reason = StepStatus.FAILED, f"internal error: {error!r}"
        raise
    else:
        record.status = StepStatus.FAILED if record.failure_reason else StepStatus.SUCCEEDED
    finally:
        record.finished_at = timezone.now()
        record.save(update_fields=["status", "exit_code", "failure_reason", "finished_at"])


def _reports_keep(
    run: PipelineRun, record: TestStep, test: TestSpec, outcome: StepOutcome, log: SectionLog
) -> None:
    """Read the step's JUnit reports and keep their cases; a report refused is said in the
    log, and never fails the step (its exit code decides)."""
    cases: list[TestCase] = []
    for pattern in test.reports:
        for folder, archive in outcome.archives:
            for path, content in report_files(archive, pattern, archived_path=folder):
                try:
                    results = junit_cases(content)
                except ReportRefused as refusal:
                    log.line(f"report {path} refused: {refusal}")
                    continue
                counts = {status: 0 for status in ("passed", "failed", "error", "skipped")}
                for result in results:
                    counts[result.status] += 1
                log.line(
                    f"report {path}: "
                    + ", ".join(f"{count} {status}" for status, count in counts.items() if count)
                )
                cases += [
                    TestCase(
                        run=run,
                        step=record,
                        report=path[:500],
                        name=result.name,
                        classname=result.classname,
                        file=result.file,
                        status=result.status,
                        seconds=result.seconds,
                        message=result.message,
                    )
                    for result in results
                ]
    TestCase.objects.bulk_create(cases, batch_size=1000)
