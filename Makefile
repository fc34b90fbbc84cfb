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

# The main job: generate the demo data (once), then train the tiny DNA+RNA seed-config variant on
# it and test it: `aidomm` compiles into the plan cache, fits (checkpoint in demo-out/) and prints
# the test metrics table. See configs/demo/demo.yaml and tools/demodata/README.md.
DEMO_CONFIG ?= configs/tiny_isoform_expression_dna_rna_concat.yaml
run: build
	$(BUILD)/bin/aidomm-demodata demo-data
	$(BUILD)/bin/aidomm fit --config $(DEMO_CONFIG) --config configs/demo/demo.yaml --progress off
	$(BUILD)/bin/aidomm test --config $(DEMO_CONFIG) --config configs/demo/demo.yaml \
	  --ckpt_path demo-out/lightning_logs/last.safetensors --progress off

test-release: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

# Release suite, then the same suite under AddressSanitizer + UBSan.
test: test-release test-asan

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
