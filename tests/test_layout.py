"""The package's shape (docs/architecture.md): imports flow one way, no circles, small modules, and
every module has its tests in the mirrored folder."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "finetune"
TESTS = REPO / "tests"
MAX_LINES = 400

# Lowest first: a package may import only packages of an earlier row (and its own modules).
LAYERS = [
    ["errors"],
    ["recipe"],
    ["runs"],
    ["distributed"],
    ["data", "regularization", "calibration"],
    ["model"],
    ["layers", "distill"],
    ["optimizer"],
    ["schedules"],
    ["training"],
    ["inference", "search"],
    ["commands"],
    ["cli"],
]

# Modules whose tests live in a test file named after another module of the same folder, and why.
COVERED_BY = {
    "recipe/base.py": "recipe/test_recipe.py",  # the schema sections: validated as one recipe
    "recipe/calibration.py": "calibration/test_calibrate.py",  # the key's checks, next to what it does
    "recipe/checkpoints.py": "recipe/test_recipe.py",
    "recipe/data.py": "recipe/test_recipe.py",
    "recipe/distill.py": "distill/test_teacher.py",  # the key's checks, next to what it does
    "recipe/distributed.py": "recipe/test_recipe.py",
    "recipe/early_stopping.py": "recipe/test_recipe.py",
    "recipe/freeze.py": "recipe/test_recipe.py",
    "recipe/guards.py": "recipe/test_recipe.py",
    "recipe/layer_lr.py": "recipe/test_recipe.py",
    "recipe/loading.py": "recipe/test_recipe.py",
    "recipe/model.py": "recipe/test_recipe.py",
    "recipe/optimizer.py": "recipe/test_recipe.py",
    "recipe/output.py": "recipe/test_recipe.py",
    "recipe/peft.py": "recipe/test_recipe.py",
    "recipe/regularization.py": "recipe/test_recipe.py",
    "recipe/reinit.py": "recipe/test_recipe.py",
    "recipe/schedule.py": "recipe/test_recipe.py",
    "recipe/schema.py": "recipe/test_recipe.py",
    "recipe/sweep.py": "search/test_sweep.py",
    "recipe/training.py": "recipe/test_recipe.py",
    "errors.py": "test_cli.py",  # how the command reports a FinetuneError: one message, exit 2
    "layers/reinit.py": "layers/test_freezing.py",  # re-init is tested with the layer recipes
    "layers/surgery.py": "layers/test_freezing.py",
    "regularization/mixout.py": "regularization/test_losses.py",  # all regularizers, one file
    "regularization/swa.py": "regularization/test_losses.py",
    "regularization/clipping.py": "regularization/test_losses.py",
    "schedules/scheduler.py": "schedules/test_formulas.py",  # formulas against the torch scheduler
    "schedules/plot.py": "schedules/test_formulas.py",
    "distributed/processes.py": "distributed/test_launch.py",  # several processes, launched
    "inference/evaluate.py": "inference/test_predict.py",
    "runs/outputs.py": "runs/test_folders.py",  # where predict/evaluate/explain may write: their tests
    "training/checkpoints.py": "runs/test_resume.py",  # written, then resumed from
}


def modules() -> dict[str, Path]:
    """`folder/module.py` -> path, for every module of the package (no __init__ files)."""
    return {
        p.relative_to(PACKAGE).as_posix(): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__init__.py"
    }


def imported_modules(path: Path) -> set[str]:
    """finetune modules a file imports at run time (`if TYPE_CHECKING:` blocks are annotations only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("finetune"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("finetune"))
    return found


def dotted(relative: str) -> str:
    return "finetune." + relative.removesuffix(".py").replace("/", ".")


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (names that are not modules dropped)."""
    known = {dotted(r): p for r, p in modules().items()}
    return {name: imported_modules(path) & known.keys() for name, path in known.items()}


def folder(module: str) -> str:
    return module.split(".")[1]


def test_imports_flow_down_the_layers():
    rank = {name: i for i, row in enumerate(LAYERS) for name in row}
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if folder(target) != folder(module) and rank[folder(target)] >= rank[folder(module)]
    ]
    assert not wrong, "imports against the layering of docs/architecture.md:\n" + "\n".join(wrong)


def test_every_folder_has_a_layer():
    folders = {folder(dotted(r)) for r in modules()}
    assert folders <= {name for row in LAYERS for name in row}


def test_no_import_circles():
    graph = import_graph()

    def circle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    circles = [" -> ".join(c) for m in graph if (c := circle_from(m))]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_module_over_400_lines():
    long = {r: n for r, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_has_its_tests_in_the_mirrored_folder():
    missing = []
    for relative in modules():
        own = Path(relative).with_name(f"test_{Path(relative).name}")
        test_file = TESTS / COVERED_BY.get(relative, own.as_posix())
        if not test_file.is_file():
            missing.append(f"{relative}: no {test_file.relative_to(REPO)}")
        elif relative in COVERED_BY and not _imports_its_folder(test_file, relative):
            missing.append(f"{relative}: {test_file.relative_to(REPO)} imports nothing of its folder")
    assert not missing, "\n".join(missing)


def _imports_its_folder(test_file: Path, relative: str) -> bool:
    """Whether a test file imports the module's folder (a test of its neighbours exercises it)."""
    parent = dotted(relative).rsplit(".", 1)[0]
    return any(name == parent or name.startswith(parent + ".") for name in imported_modules(test_file))


def test_the_layout_test_sees_a_circle_and_an_upward_import(tmp_path):
    (tmp_path / "a.py").write_text("from finetune.training.run import train\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import finetune.cli\n"
    )
    assert "finetune.training.run" in imported_modules(tmp_path / "a.py")
    assert imported_modules(tmp_path / "b.py") == set()  # annotations only


def test_test_files_have_unique_names():
    """pytest imports test files by their base name: two `test_x.py` in different folders collide."""
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
