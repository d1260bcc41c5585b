# Everything a fresh clone needs: `make demo` and `make test` build the
# virtual environment themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: readme demo test fuzz errors-table bench clean plots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

EXAMPLE := mixcli/data/classroom_sim.csv

demo: $(STAMP)
	$(BIN)/mixcli fit $(EXAMPLE) "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
	@echo
	$(BIN)/mixcli compare $(EXAMPLE) --names M14,M17,M16 \
		"mathscore ~ ses + (ses | schoolid)" \
		"mathscore ~ ses + (ses | schoolid) + (1 | classid)" \
		"mathscore ~ ses + (ses | schoolid) + (ses || classid)"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Whole-process timing of mixcli next to Rscript + lme4; takes many minutes and
# needs R with lme4. Not part of `make test` or CI. Writes bench/RESULTS.md.
# Pass options through BENCH_ARGS, e.g. make bench BENCH_ARGS=--quick
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

# Many more generated formulas, data frames and CSV files than the test suite's
# seeded run, freshly drawn each time (a few minutes). FUZZ_EXAMPLES sets how many.
FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	MIXCLI_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py

# Regenerate README.md's "What mixcli says when..." table from tests/catalogue.py.
errors-table: $(STAMP)
	$(BIN)/python tests/catalogue.py --write

# Re-run the README's shell examples and paste in their real output (needs ../shared).
readme: $(STAMP)
	$(BIN)/python tests/readme_examples.py

# The README's diagnostic plots, docs/plots/{ranef,resid,qq,profile}.png: the example
# model fitted to $(EXAMPLE) (the same bytes as `mixcli simulate --schools 107 --seed 1`).
plots: $(STAMP)
	$(BIN)/python -m mixcli.plot $(EXAMPLE) "mathscore ~ ses + (ses | schoolid) + (1 | classid)" docs/plots
