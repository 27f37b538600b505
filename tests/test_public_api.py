"""The public names are the package's: each one in ``tft_lab.__all__`` exists and is the
function or class it says, whatever submodules were imported before (no shadowing)."""
import importlib
import pkgutil

import tft_lab


def test_every_public_name_exists_even_after_every_submodule_is_imported():
    for mod in pkgutil.iter_modules(tft_lab.__path__):
        importlib.import_module(f"tft_lab.{mod.name}")
    for name in tft_lab.__all__:
        obj = getattr(tft_lab, name)
        assert not isinstance(obj, type(tft_lab)), f"tft_lab.{name} is a module, not the public {name}"
    assert callable(tft_lab.record) and callable(tft_lab.replay) and callable(tft_lab.compare)


def test_errors_share_one_root():
    for name in tft_lab.__all__:
        obj = getattr(tft_lab, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, tft_lab.TftError)


def _package_imports() -> dict[str, set[str]]:
    """tft_lab module -> the tft_lab modules it imports (anywhere in it, lazily or not)."""
    import ast
    from pathlib import Path

    root = Path(tft_lab.__file__).parent
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for mod, path in names.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
                subs = {f"{target}.{a.name}" for a in node.names} & names.keys()
                deps |= subs or ({target} & names.keys())
        graph[mod] = {d for d in deps if not (d.startswith(mod + ".") or mod.startswith(d + "."))}
    return graph


def test_imports_go_one_way():
    graph = _package_imports()
    done, path = set(), []

    def visit(mod):
        assert mod not in path, f"import cycle: {' -> '.join(path[path.index(mod):] + [mod])}"
        if mod in done:
            return
        path.append(mod)
        for dep in graph[mod]:
            visit(dep)
        path.pop()
        done.add(mod)

    for mod in graph:
        visit(mod)
    policies = {"tft_lab.recorder", "tft_lab.replayer", "tft_lab.primary", "tft_lab.backup", "tft_lab.tracer"}
    assert graph["tft_lab._backend.ptrace"] <= {"tft_lab.errors"}
    assert not graph["tft_lab.engine"] & policies
    assert all(not d.startswith("tft_lab.channel") for p in policies for d in graph[p])


def test_every_module_has_its_job_in_the_architecture_page():
    from pathlib import Path

    root = Path(tft_lab.__file__).parent
    page = (root.parent / "docs" / "architecture.md").read_text()
    for path in root.glob("*.py"):
        if path.name != "__init__.py":
            assert f"`{path.name}`" in page, f"docs/architecture.md does not say what {path.name} is for"
    for package in ("channel", "_backend"):
        assert f"`{package}/" in page
