from builds.image_stack import stack_plan
from builds.models import LayerRole
from projects.spec import parse_spec


def roles(text: str) -> list[tuple[str, str]]:
    return [(layer.image.name, layer.role) for layer in stack_plan(parse_spec(text))]


def test_an_image_something_builds_on_is_a_base_and_the_top_is_the_app() -> None:
    text = "images:\n  os: {}\n  runtime: {from: os}\n  app: {from: runtime}\n"
    assert roles(text) == [
        ("os", LayerRole.BASE),
        ("runtime", LayerRole.BASE),
        ("app", LayerRole.APP),
    ]


def test_images_neither_tested_nor_published_nor_below_them_are_not_built() -> None:
    text = (
        "images:\n  base: {}\n  app: {from: base}\n  debug: {from: base}\npublish: {image: app}\n"
    )
    assert roles(text) == [("base", LayerRole.BASE), ("app", LayerRole.APP)]


def test_a_test_image_on_top_of_the_app_makes_the_app_a_base() -> None:
    text = (
        "images:\n  app: {}\n  tests: {from: app}\n"
        'test: {image: tests, command: ["true"]}\npublish: {image: app}\n'
    )
    assert roles(text) == [("app", LayerRole.BASE), ("tests", LayerRole.APP)]


def test_a_single_image_is_the_app() -> None:
    assert roles("images:\n  app: {}\n") == [("app", LayerRole.APP)]
