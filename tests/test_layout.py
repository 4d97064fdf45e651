"""The library's shape: short functions and modules, short keyword-only signatures, a literal public
face, no import side effects, imports that run one way, one version, the formatter accepted."""

import ast
import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import twostage_lib as ts
from twostage_lib.loop import LOOP_FIELDS

PACKAGE = Path(ts.__file__).parent
ROOT = PACKAGE.parent
MODULES = sorted(PACKAGE.glob("*.py"))
STAGES = (ts.train_stage1, ts.train_stage2, ts.finetune, ts.train_supervised, ts.selftrain)

# Each module's layer: a module imports only from layers below its own (docs/library.md, "Map").
LAYERS = [
    {"checks", "recipe", "diagrams"},
    {"runtime", "clusters"},
    {"tensors", "augmentations", "freezing"},
    {"mnist", "batches", "subsets", "models"},
    {"objectives", "evaluation", "checkpoint", "guard", "smoothness", "step"},
    {"loop"},
    {"training"},
    {"propagation", "probes"},
    {"pipeline", "compare", "course", "widgets"},
    {"__main__", "__init__"},
]


def function_bodies():
    """(module, name, lines) for every function, counting its body below the docstring."""
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
                first = body[1] if has_doc else body[0]
                yield path.name, node.name, node.end_lineno - first.lineno + 1


def public_callables():
    """(name, signature) of every public function, class and method of every module."""
    for path in MODULES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and (item.name == "__init__" or not item.name.startswith("_")):
                        yield f"{path.stem}.{node.name}.{item.name}", item.args
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                yield f"{path.stem}.{node.name}", node.args


def parameter_count(args) -> int:
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (1 if names and names[0].arg in ("self", "cls") else 0)


def test_no_function_body_is_longer_than_50_lines():
    long = [f"{module}:{name} ({lines} lines)" for module, name, lines in function_bodies() if lines > 50]
    assert not long, f"split these into named steps: {long}"


def test_no_module_is_longer_than_400_lines():
    long = {path.name: n for path in MODULES if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"split these by job: {long}"


def test_no_public_function_or_method_takes_more_than_12_parameters():
    counts = dict(public_callables())
    assert len(counts) > 100  # every module was read
    allowed = {"training.selftrain": 14}  # its own knobs: lr, stage 1's scale, FixMatch's three, overrule, vat
    many = {name: n for name, args in counts.items() if (n := parameter_count(args)) > allowed.get(name, 12)}
    assert not many, f"hold shared settings in one object (LoopSettings): {many}"


def test_the_stages_take_data_positionally_and_everything_else_by_keyword():
    for stage in STAGES:
        params = list(inspect.signature(stage).parameters.values())
        data = 3 if stage is ts.selftrain else 2  # (model, data) or (model, labelled, unlabelled)
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:data]), stage.__name__
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[data:]), stage.__name__
        assert "settings" in inspect.signature(stage).parameters, stage.__name__
        # the loop's settings are held once, in LoopSettings, not repeated in the signature
        assert not set(LOOP_FIELDS) & {p.name for p in params}, stage.__name__


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.__name__)
def test_a_stage_refuses_a_keyword_that_is_not_a_loop_setting(stage, bundled):
    data = bundled.train.subset(range(64))
    args = (ts.TwoStageNetwork(), data, data) if stage is ts.selftrain else (ts.TwoStageNetwork(), data)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'epoch'.*epochs, batch_size, device"):
        stage(*args, epoch=1, progress=False)


def test_nothing_the_package_exports_takes_kwargs_but_the_stages():
    """Every other setting is in a signature; the stages' ``**loop`` takes LoopSettings' fields only."""
    hidden = []
    for name in ts.__all__:
        obj = getattr(ts, name)
        if not callable(obj) or (inspect.isclass(obj) and issubclass(obj, Exception)) or obj in STAGES:
            continue
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) and target is not object.__init__:
            hidden.append(name)
    assert not hidden, f"these take **kwargs: {hidden}"


def test_all_is_a_literal_list_of_names_and_no_modules():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    [value] = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__"]
    assert isinstance(value, ast.List) and all(isinstance(e, ast.Constant) for e in value.elts)
    names = [e.value for e in value.elts]
    assert names == ts.__all__ and len(set(names)) == len(names)
    assert not [n for n in names if inspect.ismodule(getattr(ts, n))]
    assert 30 <= len(names) <= 45
    namespace = {"data": "mine"}
    exec("from twostage_lib import *", namespace)
    assert namespace["data"] == "mine"  # a star import does not overwrite a learner's variable


def test_importing_the_package_leaves_the_thread_count_alone_under_a_cpu_quota():
    """A simulated 1-CPU quota: the import changes nothing; use_cpu_quota() then applies it."""
    code = (
        "import os, torch\n"
        "os.sched_getaffinity = lambda pid: {0}\n"
        "torch.set_num_threads(2)\n"
        "import twostage_lib as ts\n"
        "print(torch.get_num_threads(), ts.use_cpu_quota(), torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TWOSTAGE_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["2", "1", "1"]


def imports_of(path):
    """The package's own modules that ``path`` imports, anywhere in it (a late import is an arrow too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add(node.module or "__init__")
    return names


def test_modules_import_each_other_downwards_only():
    layer = {module: i for i, modules in enumerate(LAYERS) for module in modules}
    assert set(layer) == {path.stem for path in MODULES}, "give every module a layer"
    upward = [
        f"{path.stem} -> {other}"
        for path in MODULES
        for other in imports_of(path)
        if layer[other] >= layer[path.stem] and path.stem != "__init__"
    ]
    assert not upward, f"imports that run sideways or upward (or cycles): {upward}"


def test_the_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert ts.__version__ == project["version"]  # read from the installed metadata
    assert project["version"] not in (PACKAGE / "__init__.py").read_text()


def test_the_formatter_is_accepted():
    skips = {path.name: path.read_text().count("# fmt: skip") for path in MODULES}
    assert sum(skips.values()) <= 5, skips
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(PACKAGE)], capture_output=True, text=True
    )
    if "No module named ruff" in result.stderr:
        pytest.skip("ruff is not installed here (it is in the dev extra)")
    assert result.returncode == 0, result.stdout


def test_docstrings_name_notebooks_not_slides_and_the_blog_not_the_seeds():
    found = []
    for path in MODULES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "slide " in line.lower() or "the seeds" in line.lower() or "seeds'" in line.lower():
                found.append(f"{path.name}:{i}: {line.strip()}")
    assert not found, found


def test_the_docs_show_the_recipe_and_the_map_as_they_are():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "library_tables.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_shows_the_study_as_it_is():
    """README.md's study table is made from notebooks/results/compare.json (tools/study_report.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "tools.study_report", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_study_table_names_the_seeds_and_machine_of_each_budget():
    sys.path.insert(0, str(ROOT))
    from tools.study_report import seeds_line, table

    epyc = {"cpu": "AMD EPYC", "cores": 2, "device": "cpu", "fast_bf16": False}
    study = {"budgets": ["1", "10", "all"], "seeds_by_budget": {"1": list(range(10)), "10": list(range(10)),
             "all": [0, 1, 2]}, "machine_by_budget": {"1": epyc, "10": epyc, "all": None}}  # fmt: skip
    assert seeds_line(study) == (
        "1, 10 labels per digit: 10 seeds (0-9) on AMD EPYC without fast bfloat16, 2 cores, CPU; "
        "all labels per digit: 3 seeds (0-2) on Intel Xeon with fast bfloat16, 2 cores, CPU"
    )
    study.update(methods={"m": {b: {"mean": 0.5, "std": 0.0, "runs": [0.5] * 3} for b in ("1", "all")}},
                 machine_by_row={"m": {"1": {**epyc, "cpu": "Intel Xeon"}}}, total_seconds=60.0)  # fmt: skip
    lines = table(study).splitlines()
    assert lines[4].startswith("| m (†) |") and lines[-1] == (
        "† m: re-run alone, 1/digit on Intel Xeon without fast bfloat16, 2 cores, CPU."
    )
