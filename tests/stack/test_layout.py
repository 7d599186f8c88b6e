"""Specification of the package's layout: layers a newcomer can see (docs/architecture.md).

Which layer may import which is import-linter's job (`make test` runs `lint-imports` with the
contracts in pyproject.toml); these specs hold what it cannot see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "taskdispatch"
LAYERS = ("domain", "store", "engine", "service", "dev")
MODULES_MAX = 15


def _packages() -> list[Path]:
    return sorted(p.parent for p in PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("folder", _packages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layout_folder_holds_at_most_fifteen_modules(folder: Path) -> None:
    """No folder of the package holds more than 15 modules (its __init__ not counted)."""
    modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= MODULES_MAX, sorted(p.name for p in modules)


def test_layout_layers_are_folders_of_the_package() -> None:
    """Each layer is a folder; beside them the package keeps only its entry points and settings."""
    assert all((PACKAGE / layer / "__init__.py").is_file() for layer in LAYERS)
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "settings.py"]


def test_layout_design_card_names_stay_top_level() -> None:
    """The names the design document gives stay where it puts them."""
    for name in ("celery_app.py", "beat_schedule.py", "api/main.py", "taskdispatch/__init__.py"):
        assert (ROOT / name).is_file(), name
