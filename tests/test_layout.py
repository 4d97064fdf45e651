"""The library's shape: short functions, every setting in a signature, one-way imports, one version."""

import ast
import inspect
import tomllib
from pathlib import Path

import twostage_lib as ts

PACKAGE = Path(ts.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))


def function_bodies():
    """(module, name, lines) for every function, counting its body below the docstring."""
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
                first = body[1] if has_doc else body[0]
                yield path.name, node.name, node.end_lineno - first.lineno + 1


def test_no_function_body_is_longer_than_50_lines():
    long = [f"{module}:{name} ({lines} lines)" for module, name, lines in function_bodies() if lines > 50]
    assert not long, f"split these into named steps: {long}"


def test_every_setting_of_the_public_api_is_in_a_signature():
    """No **kwargs in anything the package exports: a reader (and a tool) finds every parameter."""
    hidden = []
    for name in ts.__all__:
        obj = getattr(ts, name)
        if inspect.ismodule(obj) or not callable(obj) or (inspect.isclass(obj) and issubclass(obj, Exception)):
            continue
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) and target is not object.__init__:
            hidden.append(name)
    assert not hidden, f"these take **kwargs: {hidden}"


def test_the_stages_take_the_same_loop_settings_as_keywords():
    loop = [f.name for f in ts.loop.LoopSettings.__dataclass_fields__.values()]
    for stage in (ts.train_stage1, ts.train_stage2, ts.finetune, ts.train_supervised):
        params = inspect.signature(stage).parameters
        assert [p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY] == loop, stage.__name__


def imports_of(path):
    """The package's own modules that ``path`` imports at module level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add(node.module or "__init__")
    return names


def test_modules_import_each_other_in_one_direction():
    graph = {path.stem: imports_of(path) for path in MODULES if path.stem != "__init__"}
    done, stack = set(), []

    def visit(module):
        assert module not in stack, f"import cycle: {' -> '.join([*stack, module])}"
        if module in done or module not in graph:
            return
        stack.append(module)
        for other in graph[module]:
            visit(other)
        stack.pop()
        done.add(module)

    for module in graph:
        visit(module)
    # the layers a reader can name: data below runtime below evaluation below the loop below the stages
    assert "training" not in graph["loop"] and "loop" not in graph["evaluation"]
    assert not {"training", "loop", "evaluation"} & graph["runtime"]


def test_the_version_is_written_once():
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    assert ts.__version__ == project["version"]  # read from the installed metadata
    assert project["version"] not in (PACKAGE / "__init__.py").read_text()
