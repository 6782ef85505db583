"""What each stage of a run does: checkout, config, build, test, publish (in that order,
pipelines.states.STAGE_ORDER), and the clean-up after a run.

Each stage is a function (run, log, tools) that raises StageFailure (or the builds app's
BuildFailure) for a reason the user can act on; pipelines.execution claims, runs and settles it.
"""
