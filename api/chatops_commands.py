"""Reading the text a chat bot forwards ("deploy web 42 to staging") as a command. Pure, no I/O.

The parser never raises: anything it cannot read becomes `Unknown`, whose `reason` is written for
the person who typed the command and is meant to be posted back to them as it is.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Status:
    project: str


@dataclass(frozen=True)
class Runs:
    project: str
    limit: int = 5


@dataclass(frozen=True)
class Deploy:
    project: str
    release: int
    environment: str


@dataclass(frozen=True)
class Promote:
    # None means "the caller decides" (which release, which environment is next).
    project: str
    release: int | None = None
    environment: str | None = None


@dataclass(frozen=True)
class Rollback:
    # None means "the caller decides", usually production.
    project: str
    environment: str | None = None


@dataclass(frozen=True)
class Operate:
    """Restart, stop or start what serves in an environment."""

    action: str
    project: str
    environment: str


@dataclass(frozen=True)
class Scale:
    project: str
    environment: str
    replicas: int


@dataclass(frozen=True)
class Unknown:
    text: str
    reason: str


ChatCommand = Help | Status | Runs | Deploy | Promote | Rollback | Operate | Scale | Unknown

# The same shapes pipelines/spec.py accepts in dockyard.yml, so a name that can be configured
# can also be typed.
PROJECT_SLUG = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
# ASCII digits only: \d and int() would also accept other scripts' digits.
_RELEASE_NUMBER = re.compile(r"#?([0-9]{1,10})")
# The largest number a release's PositiveIntegerField holds on every database Django supports.
RELEASE_NUMBER_MAX = 2_147_483_647
_RUNS_LIMIT = re.compile(r"[0-9]{1,3}")
RUNS_LIMIT_DEFAULT = 5
RUNS_LIMIT_MAX = 50
# Containers per host; the service says how many at most (dockyard.yml's limit).
_REPLICAS = re.compile(r"[0-9]{1,3}")

# Chat platforms forward the bot's own name with the text in one of these spellings.
_ADDRESS_WORDS = frozenset({"/dockyard", "@dockyard", "dockyard"})

_USAGE = {
    "help": "usage: help",
    "status": "usage: status <project>",
    "runs": "usage: runs <project> [<limit>]",
    "deploy": "usage: deploy <project> <release> to <environment>",
    "promote": "usage: promote <project> [<release>] [to <environment>]",
    "rollback": "usage: rollback <project> [<environment>]",
    "restart": "usage: restart <project> <environment>",
    "stop": "usage: stop <project> <environment>",
    "start": "usage: start <project> <environment>",
    "scale": "usage: scale <project> <environment> [to] <replicas>",
}

HELP_TEXT = """\
Dockyard commands:
• `status <project>`: the latest run and what each environment runs, e.g. `status web`
• `runs <project> [<limit>]`: the latest runs (5 unless you say, at most 50), e.g. `runs web 10`
• `deploy <project> <release> to <environment>`: put a release on an environment, \
e.g. `deploy web 42 to staging`
• `promote <project> [<release>] [to <environment>]`: move a release on to the next environment, \
e.g. `promote web` or `promote web 42 to production`
• `rollback <project> [<environment>]`: go back to the previous good release \
(production unless you say), e.g. `rollback web`
• `restart <project> <environment>`: fresh containers of what serves, host by host, \
e.g. `restart web production`
• `stop <project> <environment>`: stop serving (503 until a start; containers kept), \
e.g. `stop web staging`
• `start <project> <environment>`: serve the stopped release again, e.g. `start web staging`
• `scale <project> <environment> <replicas>`: run that many containers on each host, \
e.g. `scale web production 3`
• `help`: this list"""


class _Refusal(Exception):
    """Raised inside the parser only; parse_chat_command turns it into Unknown."""


class _Words:
    """The arguments after the command word, read left to right."""

    def __init__(self, command: str, words: list[str]) -> None:
        self._usage = _USAGE[command]
        self._words = words
        self._position = 0

    def refuse(self, problem: str) -> NoReturn:
        raise _Refusal(f"{problem}; {self._usage}")

    def peek(self) -> str | None:
        return self._words[self._position] if self._position < len(self._words) else None

    def take(self, what: str) -> str:
        word = self.peek()
        if word is None:
            self.refuse(f"missing {what}")
        self._position += 1
        return word

    def take_keyword(self, keyword: str) -> bool:
        """Consume the next word if it is `keyword` (in any case); say whether it was."""
        word = self.peek()
        if word is None or word.lower() != keyword:
            return False
        self._position += 1
        return True

    def finish(self) -> None:
        extra = self._words[self._position :]
        if extra:
            self.refuse(f'unexpected extra words "{" ".join(extra)}"')


def _project(words: _Words) -> str:
    word = words.take("<project>")
    if PROJECT_SLUG.fullmatch(word):
        return word
    if PROJECT_SLUG.fullmatch(word.lower()):
        words.refuse(f'project slugs are lowercase: "{word}" should be "{word.lower()}"')
    words.refuse(
        f'"{word}" is not a project slug '
        "(lowercase letters and digits, joined by single dots, dashes or underscores)"
    )


def _release(words: _Words) -> int:
    # "deploy web release 42 to staging" reads naturally, so the word "release" may come first.
    words.take_keyword("release")
    word = words.take("<release>")
    match = _RELEASE_NUMBER.fullmatch(word)
    if match is None or not 1 <= int(match[1]) <= RELEASE_NUMBER_MAX:
        words.refuse(f'"{word}" is not a release number (a positive whole number, like 42 or #42)')
    return int(match[1])


def _environment(words: _Words) -> str:
    word = words.take("<environment>")
    if ENVIRONMENT_NAME.fullmatch(word):
        return word
    if ENVIRONMENT_NAME.fullmatch(word.lower()):
        words.refuse(f'environment names are lowercase: "{word}" should be "{word.lower()}"')
    words.refuse(
        f'"{word}" is not an environment name '
        "(a lowercase letter, then up to 31 lowercase letters, digits or dashes)"
    )


def _help(words: _Words) -> Help:
    words.finish()
    return Help()


def _status(words: _Words) -> Status:
    project = _project(words)
    words.finish()
    return Status(project=project)


def _runs(words: _Words) -> Runs:
    project = _project(words)
    limit = RUNS_LIMIT_DEFAULT
    word = words.peek()
    if word is not None:
        words.take("<limit>")
        if not _RUNS_LIMIT.fullmatch(word) or not 1 <= int(word) <= RUNS_LIMIT_MAX:
            words.refuse(
                f'the limit must be a whole number from 1 to {RUNS_LIMIT_MAX}, not "{word}"'
            )
        limit = int(word)
    words.finish()
    return Runs(project=project, limit=limit)


def _deploy(words: _Words) -> Deploy:
    project = _project(words)
    release = _release(words)
    if not words.take_keyword("to"):
        word = words.peek()
        if word is None:
            words.refuse('missing "to <environment>"')
        words.refuse(f'expected "to" after the release, not "{word}"')
    environment = _environment(words)
    words.finish()
    return Deploy(project=project, release=release, environment=environment)


def _promote(words: _Words) -> Promote:
    project = _project(words)
    release = None
    environment = None
    word = words.peek()
    if word is not None and word.lower() != "to":
        looks_like_release = word.lower() == "release" or bool(_RELEASE_NUMBER.fullmatch(word))
        if not looks_like_release and ENVIRONMENT_NAME.fullmatch(word):
            # "promote web production": the environment without its "to".
            words.refuse(
                f'"{word}" is not a release number; to name the environment say "to {word}"'
            )
        release = _release(words)
    if words.take_keyword("to"):
        environment = _environment(words)
    words.finish()
    return Promote(project=project, release=release, environment=environment)


def _rollback(words: _Words) -> Rollback:
    project = _project(words)
    environment = None
    if words.peek() is not None:
        # "rollback web to production" is what people type after "deploy ... to ...".
        words.take_keyword("to")
        environment = _environment(words)
    words.finish()
    return Rollback(project=project, environment=environment)


def _operate(action: str) -> Callable[[_Words], Operate]:
    def parse(words: _Words) -> Operate:
        project = _project(words)
        # No default environment: stopping the wrong one is not undone by a message.
        environment = _environment(words)
        words.finish()
        return Operate(action=action, project=project, environment=environment)

    return parse


def _scale(words: _Words) -> Scale:
    project = _project(words)
    environment = _environment(words)
    words.take_keyword("to")
    word = words.take("<replicas>")
    if not _REPLICAS.fullmatch(word) or int(word) < 1:
        words.refuse(f'"{word}" is not a number of replicas (a whole number, like 3)')
    words.finish()
    return Scale(project=project, environment=environment, replicas=int(word))


_PARSERS: dict[str, Callable[[_Words], ChatCommand]] = {
    "help": _help,
    "status": _status,
    "runs": _runs,
    "deploy": _deploy,
    "promote": _promote,
    "rollback": _rollback,
    "restart": _operate("restart"),
    "stop": _operate("stop"),
    "start": _operate("start"),
    "scale": _scale,
}


def parse_chat_command(text: str) -> ChatCommand:
    """The command `text` asks for; Unknown, with a reason for a human, when it is not one."""
    words = text.split()
    if words and words[0].lower() in _ADDRESS_WORDS:
        words = words[1:]
    if not words:
        return Help()
    command = words[0].lower()
    parser = _PARSERS.get(command)
    if parser is None:
        return Unknown(
            text=text,
            reason=f'unknown command "{words[0]}"; commands: {", ".join(_PARSERS)}',
        )
    try:
        return parser(_Words(command, words[1:]))
    except _Refusal as refusal:
        return Unknown(text=text, reason=str(refusal))
