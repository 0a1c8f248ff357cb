"""Issue 23: imports run one way, bottom to top: trainer, then app.gpus and app.settings, app.storage, app.runs,
app.web, and app.main/app.cli on top (docs/architecture.md, "Layers"). A module importing upward is a circle waiting
to happen: this reads every import of every module (those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["trainer", "app.gpus", "app.settings", "app.storage", "app.runs", "app.web", "app.main", "app.cli"]


def _layer(module: str) -> int:
    return max(i for i, top in enumerate(LAYERS) if module == top or module.startswith(top + "."))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {f"{node.module}.{a.name}" if node.module == "app" else node.module for a in node.names}
    return {m for m in found if m.split(".")[0] in ("app", "trainer")}


def test_every_import_points_down_or_sideways():
    upward = []
    for path in sorted([*REPO.glob("app/*/**/*.py"), *REPO.glob("app/[!_]*.py"), *REPO.glob("trainer/**/*.py")]):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        upward += [f"{module} imports {m}" for m in _imports(path) if _layer(m) > _layer(module)]
    assert not upward, "\n".join(upward)


def test_the_rule_sees_an_upward_import():
    assert _layer("app.web.api") > _layer("app.runs.supervisor") > _layer("app.storage.db") > _layer("trainer.loop")
    assert _layer("app.settings") > _layer("app.gpus") and _layer("app.main") > _layer("app.web.live")
