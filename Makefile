# The two commands of the README: `make run` and `make test`. Everything else is a helper.
.PHONY: setup build run test test-asan build-asan bench clean format

JOBS ?= 2
LISTEN ?= 127.0.0.1:8080
DATA_DIR ?= ./data

setup:
	@bash scripts/setup.sh

build: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j$(JOBS)

run: build
	./build/orderflow serve --listen $(LISTEN) --data-dir $(DATA_DIR)

# The suite runs twice: against the release build, then against the ASan+UBSan build.
test: build build-asan
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS)
	@cd build && ctest --output-on-failure -j$(JOBS)

build-asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j$(JOBS)

# The same suite against the ASan+UBSan build.
test-asan: build-asan
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS)

# Benchmarks (not tests): figures and ratios on this machine, into bench/results/.
bench: build
	@bash scripts/setup.sh bench
	@bash bench/run.sh

format:
	@clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h')

clean:
	rm -rf build build-asan
