# The two commands of the README: `make run` and `make test`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build build-asan run test test-release test-asan clean

all: build

setup:
	@tools/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DAIDOMM_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DAIDOMM_WERROR=ON -DAIDOMM_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# The main job, for now: compile the tiny config and train it a few steps.
run: build
	@mkdir -p $(BUILD)/run
	$(BUILD)/bin/aidommc compile configs/tiny_transformer.yaml -o $(BUILD)/run/tiny_transformer.plan
	$(BUILD)/bin/aidommc inspect $(BUILD)/run/tiny_transformer.plan
	$(BUILD)/bin/aidomm-rt run $(BUILD)/run/tiny_transformer.plan

test-release: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

# Release suite, then the same suite under AddressSanitizer + UBSan.
test: test-release test-asan

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
