"""The test kit stays out of the product: no module of `bot` imports `testkit` when loaded.

The emulator and the simulators live in the top-level `testkit` package; the demo imports
it inside `run_demo`, so `python -m bot` (and every module it can reach) never loads it.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import bot

ROOT = Path(__file__).resolve().parent.parent

# Imports the given modules in a fresh interpreter and prints the test-kit modules loaded.
PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m == "testkit" or m.startswith("testkit."))))
"""


def bot_modules() -> list[str]:
    """Every module of the `bot` package, the demo included (it imports the kit lazily)."""
    return sorted(m.name for m in pkgutil.walk_packages(bot.__path__, "bot."))


def run_python(*args: str) -> str:
    """Run a fresh interpreter in the repository; its stdout (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def kit_modules_loaded_by(modules: list[str]) -> list[str]:
    loaded: list[str] = json.loads(run_python("-c", PROBE, *modules).strip().splitlines()[-1])
    return loaded


def test_the_kit_is_its_own_top_level_package() -> None:
    assert not (ROOT / "bot" / "simulators" / "__init__.py").exists()
    assert (ROOT / "testkit" / "telegram" / "telegram_api.json").is_file()
    assert not any(name.startswith("bot.simulators") for name in bot_modules())


def test_the_bots_entry_points_load_no_test_kit() -> None:
    assert kit_modules_loaded_by(["bot.__main__", "bot.app"]) == []


def test_no_module_of_the_bot_loads_the_test_kit() -> None:
    modules = bot_modules()
    assert {"bot.app", "bot.__main__", "bot.demo", "bot.gateways.sandbox"} <= set(modules)
    assert kit_modules_loaded_by(modules) == []


def test_the_demo_loads_the_kit_when_it_runs() -> None:
    """`python -m bot demo` still has its emulator: the lazy import inside it resolves."""
    transcript = run_python("-m", "bot", "demo")
    assert "[Maria (merchant) → bot] /invoice" in transcript
    assert "Demo complete" in transcript
