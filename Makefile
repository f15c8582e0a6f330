# `make demo` sets up and runs the demo; `make test` sets up and runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SRC    := schemas engine workflows adapters
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/loopwright demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check $(SRC) tests benchmarks

# mypy cannot follow setuptools' editable finder, so it reads a symlink tree of the
# `loopwright.*` namespace instead.
typecheck: $(STAMP)
	mkdir -p .mypy-tree/loopwright
	for d in $(SRC); do ln -sfn ../../$$d .mypy-tree/loopwright/$$d; done
	MYPYPATH=.mypy-tree $(BIN)/mypy $(addprefix -p loopwright.,$(SRC))

# The Node.js `openai` SDK drives the server in the tests (locked in tests/node); without npm
# those tests skip locally and fail in CI.
NODE_STAMP := tests/node/node_modules/.package-lock.json
$(NODE_STAMP): tests/node/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node.js SDK tests will not run"; fi

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) .mypy-tree .pytest_cache .mypy_cache .ruff_cache .hypothesis
