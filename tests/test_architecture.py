"""The package's shape: data flows one way, and each concern has one home.

Read from the source with ``ast`` (imports inside functions included), so a
lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "mixcli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The mixcli modules ``name`` imports, anywhere in its source."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mixcli"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mixcli"):
                continue
            for a in node.names:  # `from . import linalg` imports a module
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    out.discard(name)
    return {m for m in out if m in MODULES}


def _external(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
    return out


def test_no_import_cycles():
    graph = {name: _imports(name, tree) for name, tree in MODULES.items()}
    # a package's __init__ may re-export its submodules: that edge is not a dependency of theirs
    for name in graph:
        graph[name] = {m for m in graph[name] if not (_is_package(m) and name.startswith(m + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_one_module_drives_the_optimiser():
    users = sorted(name for name, tree in MODULES.items() if "nlopt" in _external(tree))
    assert users == ["mixcli.engine.optimize"]


def test_one_module_parses_delimited_text():
    parsers = sorted(
        name for name, tree in MODULES.items()
        if any(isinstance(node, ast.Attribute) and node.attr in ("read_csv", "reader", "DictReader")
               for node in ast.walk(tree))
    )
    assert parsers == ["mixcli.io"]


def test_one_atomic_writer():
    writers = sorted(
        name for name, tree in MODULES.items()
        if any(isinstance(node, ast.Attribute) and node.attr in ("mkstemp", "replace") and
               isinstance(node.value, ast.Name) and node.value.id in ("tempfile", "os")
               for node in ast.walk(tree))
    )
    assert writers == ["mixcli.output"]


def test_the_api_only_names_the_entry_points():
    # (mixcli.fitting: the one entry point that dispatches to model and glmm)
    assert _imports("mixcli.api", MODULES["mixcli.api"]) <= {"mixcli.fitting", "mixcli.comparison", "mixcli.errors",
                                                                  "mixcli.io"}


def test_no_command_line_flag_in_an_exception_below_the_cli():
    """The library speaks Python: a message that names an option uses errors.option(), which the
    command line renders as its flag (issue 20: 24 exceptions quoted --nagq, --ci, --no-refit...)."""
    import re

    flag = re.compile(r"(^|[\s(])--[a-z]")
    found = []
    for name, tree in MODULES.items():
        if name == "mixcli.cli":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and flag.search(sub.value):
                    found.append(f"{name}:{node.lineno}: {sub.value!r}")
    assert not found, "\n".join(found)


def test_messages_name_options_in_the_callers_language():
    from mixcli.errors import UsageError, option, python_style, render, use_option_style

    err = UsageError(f"{option('nagq', 3)}: needs one term; use {option('nagq', 1)} or {option('refit', False)}")
    assert str(err) == "nagq=3: needs one term; use nagq=1 or refit=False"
    from mixcli.cli import _flag

    use_option_style(_flag)
    try:
        assert str(err) == "--nagq 3: needs one term; use --nagq 1 or --no-refit"
        assert render(f"leave out {option('type', chr(39) + 'response' + chr(39))}") == "leave out --type response"
        assert render(f"try {option('sep', repr(';'))}") == "try --sep ';'"
    finally:
        use_option_style(python_style)


# The module-level settings the control record replaced: none may come back.
FORMER_SETTINGS = {
    "FTOL_ABS", "FTOL_REL", "XTOL_ABS", "MAX_EVAL", "NEAR_BOUNDARY", "BOUNDARY_SLACK", "EDGE_STEP", "RAY_SLACK",
    "WARM_START_ROWS", "WARM_START_DENSE", "WARM_START_FRACTION", "WARM_XTOL", "POLISH_ROUNDS", "SECOND_START",
    "FEW_LEVELS", "SAME_BASIN", "SEGMENT_PROBES", "SMALL_START", "MIRROR_PROBE", "MIRROR_STEP", "GRADIENT_FROM",
    "HEAVY_DENSE", "BATCH_ENTRIES", "NEWTON_TOL", "NEWTON_REL", "NEGATIVE_EIGEN", "ON_BOUND", "TOL",
    "TOL_NONCANONICAL", "MAX_ITER", "MAX_HALVINGS", "STAGE0_TOL", "STAGE1_TOL", "STEP_BETA", "HESSIAN_STEP",
    "SEPARATION", "SINGULAR_TOL", "FTOL", "XTOL", "INNER_FTOL", "INNER_XTOL", "INNER_MAXEVAL", "ZETA_TOL",
}


def _module_assignments(names):
    return sorted(f"{name}:{node.lineno} {t.id}" for name, tree in MODULES.items() for node in tree.body
                  if isinstance(node, (ast.Assign, ast.AnnAssign))
                  for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                  if isinstance(t, ast.Name) and t.id in names)


def test_every_setting_of_a_fit_lives_in_the_control_record():
    """Tolerances, limits, restart rules and seeds are fields of ``control.Control`` (each with its
    source), passed to the fit, not module globals that tests patch."""
    from mixcli.control import DEFAULT, Control

    assert not _module_assignments(FORMER_SETTINGS | {n.upper() for n in DEFAULT.as_dict()})
    sources = Control.sources()
    assert set(sources) == set(DEFAULT.as_dict()) and all(len(s) > 10 for s in sources.values())
    patched = [f"{p.name}:{i}" for p in (ROOT / "tests").glob("test_*.py")
               for i, line in enumerate(p.read_text().splitlines(), 1)
               if "monkeypatch.setattr" in line and any(n in line for n in FORMER_SETTINGS)]
    assert not patched


def test_one_singular_tolerance_and_no_hasattr_for_the_kind_of_fit():
    """lme4's isSingular tolerance is one setting (``Control.singular_tol``) that the singular flag
    and the diagnosis both take from the fit; whether a result is a GLMM is a class attribute, not
    a guess from its fields."""
    from mixcli.control import DEFAULT

    assert DEFAULT.singular_tol == 1e-4
    assert not _module_assignments({"SINGULAR_TOL", "TOL"})
    literal = [f"{name}:{node.lineno}" for name, tree in MODULES.items() for node in ast.walk(tree)
               if name in ("mixcli.singular", "mixcli.results", "mixcli.glmm")
               and isinstance(node, ast.Constant) and node.value == 1e-4]
    assert not literal
    guesses = [f"{name}:{node.lineno}" for name, tree in MODULES.items() for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr"
               and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "nagq"]
    assert not guesses


def test_one_f_tail_and_one_sd_correlation_from_lambda():
    """The F distribution's tail and the SDs/correlations of σ²ΛΛᵀ each have one implementation
    (inference.distributions.f_sf, engine.structure.sd_cor), the callers' rules on top."""
    defined = {}
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("f_sf", "sd_cor", "_sd_cor"):
                defined.setdefault(node.name, []).append(name)
    assert defined["f_sf"] == ["mixcli.inference.distributions"]
    assert defined["sd_cor"] == ["mixcli.engine.structure"]
    # the bootstrap's _sd_cor is its failed-replicate rule over sd_cor, not a second computation
    src = ast.unparse(next(n for n in ast.walk(MODULES["mixcli.inference.bootstrap"])
                           if isinstance(n, ast.FunctionDef) and n.name == "_sd_cor"))
    assert "sd_cor(" in src and "lam.T" not in src


def test_sd_cor_marks_an_undefined_correlation():
    import numpy as np

    from mixcli.engine.structure import sd_cor

    sd, cor = sd_cor(np.array([[2.0, 0.0], [1.0, 1.0]]), 3.0)
    np.testing.assert_allclose(sd, [6.0, 3.0 * np.sqrt(2.0)])
    assert cor[1, 0] == cor[0, 1] and abs(cor[1, 0] - 1.0 / np.sqrt(2.0)) < 1e-15  # 18 / (6 · 3√2)
    _, cor0 = sd_cor(np.array([[1.0, 0.0], [0.0, 0.0]]), 1.0)
    assert np.isnan(cor0[1, 0]) and cor0[1, 1] == 1.0


def test_one_ranef():
    """ranef() is written once (FitStatistics), for LMMs and GLMMs alike."""
    defs = [name for name, tree in MODULES.items() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == "ranef"]
    assert defs == ["mixcli.results"]


def test_one_entry_point_fits_a_frame():
    """fitting.fit_frame is where a frame becomes a fit: nothing else calls Model(...).fit or
    GlmmModel(...).fit in the package (the API, the command line, compare, ranova and reduce
    all go through it)."""
    calls = []
    for name, tree in MODULES.items():
        if name == "mixcli.fitting":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"
                    and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                    and node.func.value.func.id in ("Model", "GlmmModel")):
                calls.append(f"{name}:{node.lineno}")
    assert not calls


def test_no_string_surgery_on_formulas_in_ranova_reduce_and_singular():
    """ranova, reduce and the singular-fit advice edit formulas through the Formula object
    (rewrite, without_fixed, with_random_rewritten), not by splitting or splicing its text."""
    for name in ("mixcli.ranova", "mixcli.reduce", "mixcli.singular"):
        tree = MODULES[name]
        src = ast.unparse(tree)
        assert 'split("~"' not in src and "split('~'" not in src, name
        assert ".split(' | ')" not in src and ".rsplit('|'" not in src, name
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "re" not in imported, name
        # no slicing of a formula's text
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "text":
                raise AssertionError(f"{name}:{node.lineno} slices a formula's text")


def test_the_structure_is_not_reached_into_from_outside():
    """ModelStructure's private fields (its bases' matrices, its elimination cache) are read and
    written by itself only; other modules use basis_matrices, user_lambdas and elimination(), and
    the prior weights' term is given at construction."""
    found = []
    for name, tree in MODULES.items():
        if name == "mixcli.engine.structure":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("_m", "_m_inv", "_elimination"):
                found.append(f"{name}:{node.lineno} .{node.attr}")
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "weights_term"
                                                     for t in node.targets)):
                found.append(f"{name}:{node.lineno} sets weights_term")
    assert not found, found


def test_one_glmm_criterion():
    """The GLMM criterion (PIRLS's warm starts, the fresh-start retry, Laplace or AGQ) is
    engine.glmm_criterion's: the bootstrap's refits use it, with their own rule for a PIRLS that
    did not converge, instead of a copy."""
    tree = MODULES["mixcli.inference.bootstrap"]
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"pirls", "laplace", "agq_deviance"}
    assert "GlmmCriterion" in called


def test_no_flag_picks_which_theta_a_function_takes():
    """The engine's functions take one parameterisation each: ``evaluate``/``criterion`` lme4's θ,
    ``evaluate_working``/``criterion_working`` the optimiser's θ̃ (issue 20: a ``working=`` flag
    chose between them)."""
    flags = [f"{name}:{node.lineno} {node.name}" for name, tree in MODULES.items() for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and any(a.arg == "working" for a in node.args.args + node.args.kwonlyargs)]
    assert not flags


def test_the_command_line_does_not_reach_into_a_frame():
    """Whether a frame keeps its data is ``model_frame(keep_data=)``; cli.py used to set
    ``frame.table = None`` behind the results' back (issue 20)."""
    writes = [f"{name}:{node.lineno}" for name, tree in MODULES.items() if name != "mixcli.frame"
              for node in ast.walk(tree) if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Attribute) and t.attr == "table"
              and not (isinstance(t.value, ast.Name) and t.value.id == "self")]
    assert not writes


def test_the_profiled_criterion_is_written_once():
    """a + m(1 + log(2πr²/m)) − Σ log w lives in engine.factor.profiled_criterion; the factor, its
    batches, the gradient and the profile's fixed-effect criterion call it (issue 20: it was
    written out in factor.py, gradient.py and profile.py)."""
    import re

    pattern = re.compile(r"1\.0 \+ (math|np)\.log\(2(\.0)? \* (math|np)\.pi")
    places = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
              for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert len(places) == 2 and all(p.startswith("mixcli/engine/factor.py") for p in places)  # (scalar and array)
