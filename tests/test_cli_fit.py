"""`mixcli fit` end to end: formats, stdin, exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from conftest import CLASSROOM, CLASSROOM_REF, FIXTURES, ROOT, load_json, need
from conftest import run_cli as run

EXAMPLE = ROOT / "mixcli" / "data" / "classroom_sim.csv"
M17 = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
JSON_KEYS = [
    "formula", "method", "nobs", "ngroups", "fixef", "varcorr", "correlations", "theta", "sigma",
    "criterion", "loglik", "aic", "bic", "npar", "singular", "converged", "warnings", "icc", "r2", "vcov",
    "fixef_correlation", "control",
]


def test_json_has_exactly_the_documented_keys_and_lme4s_numbers():
    ref = load_json(CLASSROOM_REF)["M17"]["REML"]
    out = run("fit", str(need(CLASSROOM)), M17, "--format", "json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert list(rec) == JSON_KEYS
    assert rec["method"] == "REML" and rec["nobs"] == 1190 and rec["npar"] == 7
    assert rec["ngroups"] == {"classid": 312, "schoolid": 107}
    assert [f["term"] for f in rec["fixef"]] == ["(Intercept)", "ses"]
    assert set(rec["fixef"][0]) == {"term", "estimate", "se", "t", "df", "p"}
    assert rec["varcorr"][-1]["group"] == "Residual" and rec["varcorr"][-1]["term"] is None
    assert [(v["group"], v["term"]) for v in rec["varcorr"]] == [
        ("classid", "(Intercept)"), ("schoolid", "(Intercept)"), ("schoolid", "ses"), ("Residual", None)
    ]
    assert rec["correlations"] == [
        {"group": "schoolid", "term1": "(Intercept)", "term2": "ses", "corr": pytest.approx(0.470139, abs=1e-4)}
    ]
    assert rec["criterion"] <= ref["criterion"] + 1e-6
    assert rec["sigma"] == pytest.approx(ref["sigma"], rel=1e-5)
    assert rec["loglik"] == pytest.approx(-rec["criterion"] / 2)
    assert rec["aic"] == pytest.approx(rec["criterion"] + 2 * 7)
    assert rec["singular"] is False and rec["converged"] is True and rec["warnings"] == []


def test_several_formulas_give_one_json_line_each_and_ml_flag():
    out = run("fit", str(EXAMPLE), "mathscore ~ ses + (1 | schoolid)", M17, "--ml", "--format", "json")
    assert out.returncode == 0, out.stderr
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["method"] for r in recs] == ["ML", "ML"]
    assert [r["formula"] for r in recs] == ["mathscore ~ ses + (1 | schoolid)", M17]


def test_csv_is_tidy_fixed_effects():
    out = run("fit", str(EXAMPLE), M17, "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["term"] for r in rows] == ["(Intercept)", "ses"]
    assert set(rows[0]) == {"formula", "method", "term", "estimate", "se", "t", "df", "p"}
    assert float(rows[1]["t"]) == pytest.approx(float(rows[1]["estimate"]) / float(rows[1]["se"]))


def test_table_reads_like_summary_lmer_and_warns_on_singular_fits():
    out = run("fit", str(need(CLASSROOM)), "mathscore ~ ses + (ses | schoolid) + (ses || classid)")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for piece in ("REML criterion at convergence: 11874.97", "Random effects:", "Fixed effects:",
                  "classid.1", "Number of obs: 1190, groups:  classid, 312; schoolid, 107",
                  "boundary (singular) fit: the classid (ses) standard deviation is estimated at 0",
                  "mathscore ~ ses + (ses | schoolid) + (1 | classid)"):
        assert piece in text
    assert "\x1b[" not in text  # plain text when piped


def test_stdin_and_the_nest_pipeline():
    data = need(CLASSROOM).read_text()
    nested = run("nest", "-", "schoolid:classid2", stdin=data)
    assert nested.returncode == 0, nested.stderr
    out = run("fit", "-", "mathscore ~ ses + (1 | schoolid) + (1 | schoolid_classid2)", "--format", "json",
              stdin=nested.stdout)
    assert out.returncode == 0, out.stderr
    ref = load_json(CLASSROOM_REF)["M20"]["REML"]
    rec = json.loads(out.stdout)
    assert rec["criterion"] == pytest.approx(ref["criterion"], abs=1e-6)
    assert rec["ngroups"]["schoolid_classid2"] == 312


@pytest.mark.parametrize("args,code,needle", [
    (["fit", "missing.csv", "y ~ x + (1 | g)"], 1, "missing.csv"),
    (["fit", str(EXAMPLE), "mathscore ~ ses + (1 | schoolid"], 2, "column"),
    (["fit", str(EXAMPLE), "mathscore ~ sse + (1 | schoolid)"], 2, "did you mean 'ses'"),
    (["fit", str(EXAMPLE), "mathscore ~ ses"], 2, "no random-effects terms"),
])
def test_errors_are_one_line_with_exit_code(args, code, needle):
    out = run(*args)
    assert out.returncode == code
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr


def test_help_does_not_import_scipy_or_numpy():
    code = (
        "import sys; from click.testing import CliRunner; from mixcli.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
        "print(sorted(m for m in ('scipy', 'numpy', 'pandas', 'pyarrow', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_table_in_csv_and_vcov_in_json():
    path = str(FIXTURES / "data" / "slopes.csv")
    formula = "y ~ x + (x | g)"
    rec = json.loads(run("fit", path, formula, "--format", "json").stdout)
    names = [f["term"] for f in rec["fixef"]]
    assert list(rec["vcov"]) == names and list(rec["vcov"]["x"]) == names
    for f in rec["fixef"]:  # vcov(m) and the SEs: one computation
        assert rec["vcov"][f["term"]][f["term"]] == pytest.approx(f["se"] ** 2, rel=1e-12)
        assert rec["fixef_correlation"][f["term"]][f["term"]] == pytest.approx(1.0, rel=1e-12)
    c = rec["fixef_correlation"]["x"]["(Intercept)"]
    assert c == pytest.approx(rec["vcov"]["x"]["(Intercept)"] / (rec["fixef"][0]["se"] * rec["fixef"][1]["se"]))

    varcorr = list(csv.DictReader(io.StringIO(run("fit", path, formula, "--format", "csv", "--table", "varcorr").stdout)))
    assert [(r["group"], r["term"], r["term2"]) for r in varcorr] == [
        ("g", "(Intercept)", ""), ("g", "x", ""), ("Residual", "", ""), ("g", "(Intercept)", "x")]
    assert float(varcorr[3]["corr"]) == pytest.approx(rec["correlations"][0]["corr"], rel=1e-12)

    out = run("fit", path, formula, "--format", "csv", "--table", "intervals", "--ci", "profile")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["parameter"] for r in rows] == ["(Intercept)", "x", "sd_(Intercept)|g", "cor_x.(Intercept)|g",
                                              "sd_x|g", "sigma"]
    assert {r["ci_method"] for r in rows} == {"profile"} and {r["method"] for r in rows} == {"REML"}
    tidy = list(csv.DictReader(io.StringIO(run("fit", path, formula, "--format", "csv", "--table", "tidy").stdout)))
    assert [r["term"] for r in tidy] == ["(Intercept)", "x", "sd__(Intercept)", "sd__x", "cor__(Intercept).x",
                                         "sd__Observation"]
    bad = run("fit", path, formula, "--format", "csv", "--table", "intervals")
    assert bad.returncode == 2 and "--table intervals needs --ci" in bad.stderr


def test_compare_json_carries_the_warnings():
    path = str(FIXTURES / "data" / "slopes.csv")
    rec = json.loads(run("compare", path, "y ~ x + (1 | g)", "y ~ x + (x | g)", "--format", "json").stdout)
    assert "warnings" in rec and any("boundary" in w for w in rec["warnings"])


def test_tsv_is_the_csv_with_tabs():
    path = str(FIXTURES / "data" / "slopes.csv")
    for extra in ([], ["--augment"]):
        as_csv = run("fit", path, "y ~ x + (1 | g)", "--format", "csv", *extra).stdout
        as_tsv = run("fit", path, "y ~ x + (1 | g)", "--format", "tsv", *extra).stdout
        assert list(csv.reader(io.StringIO(as_csv))) == list(csv.reader(io.StringIO(as_tsv), delimiter="\t"))
        assert "\t" in as_tsv.splitlines()[0]


def test_augment_to_a_file_is_what_standard_output_gets(tmp_path):
    path = str(FIXTURES / "data" / "slopes.csv")
    for fmt, name in (("csv", "rows.csv"), ("json", "rows.jsonl"), ("tsv", "rows.tsv")):
        out = run("fit", path, "y ~ x + (1 | g)", "--augment", "--format", fmt, "-o", str(tmp_path / name))
        assert out.returncode == 0 and out.stdout == ""
        stdout = run("fit", path, "y ~ x + (1 | g)", "--augment", "--format", fmt).stdout
        assert (tmp_path / name).read_text() == stdout


def test_csv_of_profile_intervals_says_where_the_variance_intervals_are():
    out = run("fit", str(FIXTURES / "data" / "slopes.csv"), "y ~ x + (1 | g)", "--ci", "profile", "--format", "csv")
    assert out.returncode == 0
    assert "--table intervals" in out.stderr
    assert list(csv.DictReader(io.StringIO(out.stdout)))[0]["lower"]  # the fixed effects' intervals are there


@pytest.mark.parametrize("command", ["anova", "ranova", "reduce"])
@pytest.mark.parametrize("option", [["--family", "binomial"], ["--link", "probit"], ["--nagq", "9"]])
def test_lmm_only_commands_point_glmm_users_to_compare(command, option):
    """Not click's "no such option '--family'. Did you mean '--ml'?": one line saying why, and what to use."""
    from conftest import run_cli

    out = run_cli(command, str(FIXTURES / "data" / "glmm_binary.csv"), "pass ~ ses + (1 | schoolid)", *option)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert f"{command} is for linear mixed models" in out.stderr and "mixcli compare" in out.stderr


def test_gaussian_family_is_accepted_by_lmm_only_commands():
    from conftest import run_cli

    out = run_cli("anova", str(FIXTURES / "data" / "slopes.csv"), "y ~ x + (1 | g)", "--family", "gaussian")
    assert out.returncode == 0, out.stderr


def test_intervals_table_says_which_fit_each_estimate_is_from():
    """A REML fit's profile intervals are of the ML deviance (as lme4's): each row's estimate is the
    REML fit's, and ci_estimate the ML estimate the interval is centred on (issue 19: a REML row
    showed the ML SD)."""
    path = str(FIXTURES / "data" / "slopes.csv")
    formula = "y ~ x + (x | g)"

    def table(*extra):
        out = run("fit", path, formula, "--format", "csv", *extra)
        assert out.returncode == 0, out.stderr
        return list(csv.DictReader(io.StringIO(out.stdout)))

    reml_vc = {(r["term"], r["term2"]): r for r in table("--table", "varcorr")}
    ml_vc = {(r["term"], r["term2"]): r for r in table("--table", "varcorr", "--ml")}
    ml_fixef = {r["term"]: float(r["estimate"]) for r in table("--ml")}
    rows = {r["parameter"]: r for r in table("--table", "intervals", "--ci", "profile")}
    assert {r["ci_criterion"] for r in rows.values()} == {"ML"}
    sd = rows["sd_(Intercept)|g"]
    assert float(sd["estimate"]) == pytest.approx(float(reml_vc["(Intercept)", ""]["sd"]), rel=1e-12)
    assert float(sd["ci_estimate"]) == pytest.approx(float(ml_vc["(Intercept)", ""]["sd"]), rel=1e-6)
    assert float(sd["estimate"]) != pytest.approx(float(sd["ci_estimate"]), rel=1e-3)  # they differ here
    cor = rows["cor_x.(Intercept)|g"]
    assert float(cor["estimate"]) == pytest.approx(float(reml_vc["(Intercept)", "x"]["corr"]), rel=1e-12)
    assert float(cor["ci_estimate"]) == pytest.approx(float(ml_vc["(Intercept)", "x"]["corr"]), rel=1e-5)
    assert float(rows["x"]["ci_estimate"]) == pytest.approx(ml_fixef["x"], rel=1e-7)
    # Wald intervals are about the fit's own estimates
    wald = table("--table", "intervals", "--ci", "0.9")
    assert {r["ci_criterion"] for r in wald} == {"REML"}
    assert all(r["ci_estimate"] == r["estimate"] for r in wald)
    rec = json.loads(run("fit", path, formula, "--format", "json", "--ci", "profile").stdout)
    assert rec["ci"]["criterion"] == "ML"
    iv = next(i for i in rec["ci"]["intervals"] if i["parameter"] == "sd_(Intercept)|g")
    assert iv["estimate"] == pytest.approx(float(sd["estimate"]), rel=1e-12)
    assert iv["ci_estimate"] == pytest.approx(float(sd["ci_estimate"]), rel=1e-12)
