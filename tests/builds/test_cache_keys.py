from builds.cache_keys import ContextFile, base_layer_cache_key

FILES = [
    ContextFile("busybox", 0o100755, "a" * 64),
    ContextFile("conf/app.ini", 0o100644, "b" * 64),
]


def key(**changes: object) -> str:
    inputs: dict[str, object] = {
        "dockerfile": b"FROM scratch\nONBUILD COPY . /app\n",
        "context_files": FILES,
        "build_args": {"PYTHON": "3.11"},
        "parent_digest": "sha256:" + "c" * 64,
    }
    inputs.update(changes)
    return base_layer_cache_key(**inputs)  # type: ignore[arg-type]


def test_the_same_inputs_give_the_same_key_whatever_the_file_order() -> None:
    assert key() == key(context_files=list(reversed(FILES)))
    assert len(key()) == 64


def test_every_input_changes_the_key() -> None:
    variants = [
        key(dockerfile=b"FROM scratch\nONBUILD COPY . /srv\n"),
        key(context_files=[FILES[0]]),
        key(context_files=[FILES[0], ContextFile("conf/app.ini", 0o100644, "d" * 64)]),
        key(context_files=[ContextFile("busybox", 0o100644, "a" * 64), FILES[1]]),
        key(context_files=[FILES[0], ContextFile("conf/other.ini", 0o100644, "b" * 64)]),
        key(build_args={"PYTHON": "3.12"}),
        key(build_args={}),
        key(parent_digest="sha256:" + "e" * 64),
        key(parent_digest=None),
    ]
    assert len({key(), *variants}) == len(variants) + 1


def test_inputs_cannot_run_together_into_the_same_key() -> None:
    assert key(build_args={"AB": "C"}) != key(build_args={"A": "BC"})
