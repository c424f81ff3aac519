"""The structure rules: one declaration per setting, no import cycles in the core, no test module
imported by another, core tests free of Streamlit."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from fmnist_core.commands.cli import build_parser
from fmnist_core.modeling.config import DEFAULTS, SETTINGS, SOURCE_FIELDS, TrainConfig, flag_of
from tests.helpers.paths import ROOT

CORE = ROOT / "fmnist_core"


def train_flags() -> dict[str, object]:
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    return {action.dest: action for action in train._actions}


def test_every_setting_is_declared_once_with_what_a_user_needs():
    config_fields = set(TrainConfig.__dataclass_fields__) - {"extra", *SOURCE_FIELDS}  # paths, CLI only: see config.py
    assert set(SETTINGS) == config_fields
    for name, declared in SETTINGS.items():
        assert declared.label and declared.help.endswith("."), name
        if declared.kind in ("int", "float"):
            assert declared.low is not None and declared.high is not None and declared.low < declared.high, name
        if declared.kind == "choice":
            assert DEFAULTS[name] in declared.allowed(), name
        TrainConfig().validate()  # every default is allowed


def test_every_setting_has_a_cli_flag_with_help():
    flags = train_flags()
    for name in SETTINGS:
        action = flags[name]
        assert flag_of(name) in action.option_strings
        assert action.help and SETTINGS[name].help.split(".")[0] in action.help.replace("%%", "%")


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if s.kind in ("int", "float")])
def test_cli_and_config_refuse_the_same_values(name, tmp_path):
    """Just outside the declared range: the CLI's message is validate()'s, flag and all."""
    from fmnist_core.commands.cli import main

    declared = SETTINGS[name]
    outside = declared.high + (1 if declared.kind == "int" else 0.5)
    with pytest.raises(Exception) as expected:
        TrainConfig(**{name: outside}).validate()
    code = main(["train", flag_of(name), str(outside), "--out", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()
    assert expected.value.field == name


def test_every_setting_has_a_form_widget_whose_limits_are_the_configs(app):
    at = app("train")
    widgets = {w.key: w for kind in (at.selectbox, at.number_input, at.checkbox, at.text_input) for w in kind}
    for name, declared in SETTINGS.items():
        widget = widgets.get(f"f_{name}")
        assert widget is not None, f"no form widget for {name}"
        assert widget.label == declared.label
        if declared.kind == "choice":
            assert list(widget.options) == [str(c) if name != "patch" else ("off" if c == 0 else f"{c}x{c} tiles") for c in declared.allowed()]
        if declared.kind in ("int", "float"):
            # No limits of the widget's own: Streamlit would keep its last valid value and run that.
            assert not widget.proto.has_min and not widget.proto.has_max, name
    for name in ("lr", "batch_size", "epochs", "momentum", "label_smoothing", "seed", "threads", "width", "validation", "ema"):
        declared = SETTINGS[name]
        if name == "width":
            at.selectbox(key="f_model").set_value("resnet_fm").run()
        outside = declared.high + (1 if declared.kind == "int" else 0.5)
        at.number_input(key=f"f_{name}").set_value(outside).run()
        assert any(declared.describe_range() in e.value for e in at.error), (name, [e.value for e in at.error])
        assert at.button(key="start").disabled
        at.number_input(key=f"f_{name}").set_value(DEFAULTS[name] if DEFAULTS[name] is not None else 16).run()
        assert not at.button(key="start").disabled, (name, [e.value for e in at.error])


# Module names are unique across the core's sub-packages (a test checks), so a stem names a module.
MODULES = {p.stem: p for p in CORE.glob("*/*.py") if p.stem != "__init__"}
PACKAGE_OF = {stem: path.parent.name for stem, path in MODULES.items()}


def imports_of(path) -> set[str]:
    """The fmnist_core modules a module imports (absolute imports, at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmnist_core."):
            names = [f"{node.module}.{alias.name}" for alias in node.names]  # from fmnist_core.pkg[.module] import x
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("fmnist_core.")]
        found.update(name.split(".")[2] for name in names if len(name.split(".")) > 2 and name.split(".")[2] in MODULES)
    return found


def test_the_core_is_sub_packages_of_uniquely_named_modules_with_one_import_style():
    """Issue 24: 52 flat modules became sub-packages by layer; each says its job in one line,
    and the core imports itself only absolutely (`from fmnist_core.store.run_store import ...`),
    so the layer rules below read every import."""
    stems = [p.stem for p in CORE.glob("*/*.py") if p.stem != "__init__"]
    assert len(stems) == len(set(stems)) > 40, sorted(s for s in stems if stems.count(s) > 1)
    assert {p.name for p in CORE.glob("*.py")} == {"__init__.py", "__main__.py"}  # nothing left flat
    for package in {path.parent for path in MODULES.values()}:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and "\n" not in doc, package.name
    relative = [str(p.relative_to(ROOT)) for p in CORE.rglob("*.py")
                if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(p.read_text())))]
    assert not relative, relative


def test_the_core_has_no_import_cycles_and_scoring_sits_below_training():
    graph = {stem: imports_of(path) for stem, path in MODULES.items()}

    def reaches(start: str, goal: str, seen=()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    cycles = [m for m in graph if reaches(m, m)]
    assert not cycles, f"import cycles through: {cycles}"
    for below in ("scoring", "inference", "metrics", "checkpoint", "run_store", "catalog"):
        assert not reaches(below, "engine"), f"{below} imports the training loop"


def test_every_status_is_declared_once_and_has_a_badge():
    """Issue 24: statuses were bare strings in 11 files, their groups in four modules and two
    pages' badge tables; now fmnist_core.base.statuses declares them and ui.badges shows them."""
    from fmnist_core.base.statuses import ACTIVE, ENDED, RESUMABLE, SWEEP_ACTIVE, SWEEP_ENDED, RunStatus, SweepStatus
    from fmnist_core.formats.run_files import RESULT_STATUSES
    from ui.badges import badge

    assert set(ACTIVE) | set(ENDED) == set(RunStatus) and not set(ACTIVE) & set(ENDED)
    assert set(SWEEP_ACTIVE) | set(SWEEP_ENDED) == set(SweepStatus) and set(RESUMABLE) <= set(ENDED)
    assert set(RESULT_STATUSES) == set(ENDED) - {RunStatus.INTERRUPTED}
    assert all(badge(s).endswith(s) and badge(s) != s for s in RunStatus)
    assert all(badge(s, sweep=True) != s for s in SweepStatus)
    assert RunStatus.FINISHED == "finished" and json.dumps(RunStatus.FINISHED) == '"finished"'  # as stored
    # each status carries how it reads and its group, for runs and sweeps alike
    assert [s for s in RunStatus if s.active] == list(ACTIVE) and {s for s in RunStatus if s.resumable} == set(RESUMABLE)
    assert [s for s in SweepStatus if s.active] == list(SWEEP_ACTIVE)
    assert all(s.icon and s.tone in ("", "good", "bad", "warning") and s.label for s in [*RunStatus, *SweepStatus])
    assert (RunStatus.STARTING.label, SweepStatus.STARTING.label) == ("starting", "starting Ray")
    for name in ("ACTIVE", "ENDED", "RESUMABLE", "SWEEP_ACTIVE", "SWEEP_ENDED", "BADGES"):  # nowhere else
        declared = [str(path.relative_to(ROOT)) for path in [*ROOT.glob("fmnist_core/*/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("app_pages/*.py")]
                    if re.search(rf"^{name} = ", path.read_text(), re.M)]
        assert declared in ([], ["fmnist_core/base/statuses.py"]), (name, declared)


def test_file_mechanics_live_in_one_module():
    """Issue 24: the atomic write was written three times (checkpoint, resume, export) and
    process identity twice (run_store, sweep_store); fmnist_core.base.files is now their one
    home, which the checkpoint format, the stores and the exports use."""
    mechanics = {  # job: (pattern, the modules allowed to do it)
        "a temp file renamed into place": (r"os\.replace\(|tempfile\.mkstemp\(", {"files", "export"}),  # export: a writability probe
        "a pid's start time": (r"/proc/\{pid\}/stat|os\.kill\([^)]*, 0\)", {"files"}),
        "a file's SHA-256": (r"for block in iter\(|def \w*sha256\(", {"files"}),
        # photo sets and `photos synth` each renamed their own temp folder into place
        "a folder written whole, then renamed": (r"\.partial|\.new-|def atomic_folder", {"files"}),
    }
    for job, (pattern, allowed) in mechanics.items():
        found = {stem for stem, path in MODULES.items() if re.search(pattern, path.read_text(), re.M)}
        assert "files" in found and found <= allowed, (job, found)
    for store in ("resume", "sweep_store", "reproduce", "photosets", "export"):  # they write files, not checkpoints
        assert "checkpoint" not in imports_of(MODULES[store]), store


def test_the_architecture_page_draws_the_real_import_graph():
    """ARCHITECTURE.md's layer drawing has one line per sub-package with exactly its modules,
    and each module imports only from its own package or the packages drawn below it, so the
    drawing cannot drift from the code."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    drawing = text[text.index("fmnist_core/ "):text.index("```", text.index("fmnist_core/ "))].splitlines()[1:]
    lines = [re.split(r"\s{3,}", line.strip()) for line in drawing]  # package/, its modules, its job
    level = {}
    for depth, (package, modules, *_job) in enumerate(reversed(lines)):  # the bottom line is level 0
        package = package.rstrip("/")
        assert package not in level, f"{package} is drawn twice"
        level[package] = depth
        assert set(re.findall(r"[a-z_0-9]+", modules)) == {m for m, p in PACKAGE_OF.items() if p == package}, package
    assert set(level) == set(PACKAGE_OF.values())
    for module, path in MODULES.items():
        above = [m for m in imports_of(path) if level[PACKAGE_OF[m]] > level[PACKAGE_OF[module]]]
        assert not above, f"{module} ({PACKAGE_OF[module]}) imports {above}, drawn above it"


def test_the_readme_layout_names_every_module():
    """The README's Layout section gives each module its one-line job: a module added without
    one (bench_photo, remote_runs and ui/badges were) fails here."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    named = set(re.findall(r"[a-z_0-9]+", layout))
    modules = [p for p in [*ROOT.glob("fmnist_core/*/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("app_pages/*.py")]
               if p.stem != "__init__"]
    assert modules and [str(p.relative_to(ROOT)) for p in modules if p.stem not in named] == []


STATUS_WORDS = "queued|starting|running|stopping|finished|stopped|diverged|failed|cancelled|interrupted"


def test_statuses_are_compared_and_set_as_enum_members():
    """Issue 24: a status typed as text ("finished" in 11 files) drifts from the one declaration
    (base/statuses.py). Code compares and sets RunStatus / SweepStatus members; a bare status
    word after ==, !=, `in (` or `status =` outside statuses.py fails here."""
    pattern = re.compile(rf'(==|!=|\bin \(|status\w*\s*=|status=)\s*"({STATUS_WORDS})"')
    files = [*ROOT.glob("fmnist_core/**/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("app_pages/*.py"), *ROOT.glob("scripts/*.py")]
    found = [f"{p.relative_to(ROOT)}:{n}" for p in files if p.name != "statuses.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line.split("#")[0])]
    assert files and found == []


def test_pages_do_no_ml_themselves():
    """Pages lay out widgets and results; the ML is fmnist_core's. No page imports torch at
    run time (a type under `if TYPE_CHECKING:` is allowed): Predict did, for a type hint and
    to pick a test example by hand."""
    found = []
    for page in ROOT.glob("app_pages/*.py"):
        tree = ast.parse(page.read_text())
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for n in ast.walk(node)}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if id(node) not in type_only and any(n == "torch" or n.startswith("torch.") for n in names):
                found.append(f"{page.name}:{node.lineno}")
    assert found == []


def test_compare_entries_have_one_typed_key():
    """Issue 24: Compare split its "run:<id>" / "table1:<recipe>" keys by hand in three places;
    catalog.EntryKey builds and reads them, and is the str that widgets and links carry."""
    from fmnist_core.store.catalog import EntryKey

    key = EntryKey.of("table1", "cnn_c")
    assert key == "table1:cnn_c" and (key.source, key.ident) == ("table1", "cnn_c")
    with pytest.raises(ValueError):
        EntryKey.of("elsewhere", "x")
    by_hand = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("app_pages/*.py"), *ROOT.glob("ui/*.py")]
               if re.search(r"key\.split\(|f\"(run|table1|shipped):", p.read_text())]
    assert by_hand == []


def test_each_models_default_dropout_is_declared_once():
    """Issue 24: a model's default dropout was typed in register_model and in its builder's
    signature; the registry now reads the signature."""
    import inspect

    from fmnist_core.modeling.models import list_models, model_info

    assert not re.search(r"default_dropout\s*=\s*[0-9]", MODULES["models"].read_text())
    for name in list_models():
        parameter = inspect.signature(model_info(name).builder).parameters.get("dropout")
        assert model_info(name).default_dropout == (parameter.default if parameter else None), name


def imports_of_test_modules(tests: Path) -> dict[str, list[str]]:
    """{test file: the test modules it imports}. A test module is any `test_*` module; shared
    fixtures belong in a conftest.py, shared helpers in tests/helpers or tests/hostile.py."""
    found = {}
    for path in sorted(tests.rglob("test_*.py")):
        names = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                names += [module, *(f"{module}.{alias.name}" for alias in node.names if alias.name.startswith("test_"))]
        test_modules = sorted({name for name in names if (name.startswith(("tests.", ".")) or name == "tests")
                               and any(part.startswith("test_") for part in name.split("."))})
        if test_modules:
            found[str(path.relative_to(tests.parent))] = test_modules
    return found


def test_no_test_module_imports_another():
    """Issue 24: fixtures and helpers were imported from other test modules (13 times), so a
    test's set-up lived in whichever test module first needed it. Nor does any module import a
    conftest.py (pytest's docs advise against it; ROOT, run_app, StreamlitServer... were
    imported from there 40 times): helpers live in tests/helpers."""
    assert imports_of_test_modules(ROOT / "tests") == {}
    from_conftest = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("scripts/*.py")]
                     if re.search(r"^\s*from tests\.(\w+\.)*conftest import|^\s*import tests\.(\w+\.)*conftest", p.read_text(), re.M)]
    assert from_conftest == []


def test_core_tests_run_without_streamlit():
    """tests/core is the layer a change to fmnist_core is checked by: like the core, it never
    imports Streamlit, ui/ or a page (tests of a page live in tests/app)."""
    found = {}
    for path in sorted((ROOT / "tests" / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [m for m in modules if m.split(".")[0] in ("streamlit", "ui", "app_pages", "streamlit_app")]
            if bad:
                found.setdefault(path.name, []).extend(bad)
    assert found == {}
