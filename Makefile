# The two commands of the README: `make demo` and `make test`. Both set up what they need first.
VENV ?= .venv
DEMO_TEXT ?= Hello! I am a portrait, and I can talk, blink and look around, all on this little computer.

.PHONY: setup demo test lint bench clean

setup:
	bash tools/setup.sh

# The demo needs no export toolchain (torch and friends are gigabytes): device packages + the sample.
demo:
	EXTRAS=demo bash tools/setup.sh
	$(VENV)/bin/portrait animate --text "$(DEMO_TEXT)" --out demo.mp4 --overwrite

test:
	bash tools/setup.sh --test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/portrait bench

clean:
	rm -rf $(VENV) demo.mp4 .pytest_cache .ruff_cache
