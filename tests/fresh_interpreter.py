"""Python run in a new interpreter, for what a test must see from a process of its own: which
modules a kind of process loads, what its memory does."""

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def printed_json(snippet: str, env: Mapping[str, str] | None = None) -> Any:
    """What `snippet`, run in a new interpreter at the project's root, printed last, as JSON."""
    answer = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        env=os.environ if env is None else env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])
