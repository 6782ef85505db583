"""docs/configuration.md's table is the settings module's, and every setting says what it is."""

from django.conf import settings

from config.settings_reference import (
    SETTINGS_FILE,
    configuration_table,
    document_with_table,
    settings_reference,
)


def test_the_configuration_document_holds_the_table_the_settings_module_gives() -> None:
    document = (settings.BASE_DIR / "docs" / "configuration.md").read_text()
    table = configuration_table(settings_reference(SETTINGS_FILE.read_text()))
    assert document_with_table(document, table) == document, (
        "docs/configuration.md is stale: run python manage.py configdoc"
    )


def test_every_variable_the_settings_read_is_explained() -> None:
    reference = settings_reference(SETTINGS_FILE.read_text())
    names = {setting.variable for setting in reference}
    assert {"DOCKYARD_LOG_LEVEL", "DATABASE_URL", "DOCKYARD_SECRET_KEY"} <= names
    unexplained = [setting.variable for setting in reference if not setting.meaning]
    assert unexplained == [], f"give these a #: line in config/settings.py: {unexplained}"


def test_a_worded_default_replaces_the_code_one() -> None:
    source = """
#: Where things go. (default: the data folder)
THING = env_path("DOCKYARD_THING", BASE_DIR / "x")
#: How many.
COUNT = env_int("DOCKYARD_COUNT", 3)
"""
    [thing, count] = settings_reference(source)
    assert (thing.variable, thing.default, thing.meaning) == (
        "DOCKYARD_THING",
        "the data folder",
        "Where things go.",
    )
    assert (count.default, count.meaning) == ("`3`", "How many.")
