"""Process-wide settings the service makes before its threads start."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CAP = "from audiosearch.core.threads import cap_malloc_arenas; print(cap_malloc_arenas())"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the arena cap is a glibc setting")
def test_malloc_arenas_are_capped_unless_the_operator_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = [sys.executable, "-c", CAP]
    assert subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout.strip() == "True"
    chosen = {**env, "MALLOC_ARENA_MAX": "4"}
    assert subprocess.run(run, capture_output=True, text=True, env=chosen, check=True).stdout.strip() == "False"
