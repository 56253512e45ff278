# The two commands a newcomer needs: `make demo` and `make test`. Everything they need
# (the control plane binaries included) is built on first use and cached outside the clone.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CONTROL_PLANE := tests/control-plane
CARGO ?= cargo

.PHONY: test fmt-check clippy build-tests control-plane demo demo-down demo-smoke crds bench chart-lint

## test: formatting, lints, unit, integration and end-to-end tests against a real API server,
## then the demo once from start to Ready
test: fmt-check clippy control-plane build-tests
	$(CONTROL_PLANE)/with.sh $(CARGO) test --locked
	$(MAKE) demo-smoke

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --locked --all-targets -- -D warnings

build-tests:
	$(CARGO) test --locked --no-run

## control-plane: build (once per machine) kube-apiserver, kubectl, etcd and helm
control-plane:
	$(CONTROL_PLANE)/build.sh all

## demo: control plane, emulator and operator; the example repositories become Ready
demo: control-plane
	demo/up.sh

## demo-down: stop everything `make demo` started
demo-down:
	demo/down.sh

## demo-smoke: `make demo` then `make demo-down`, failing if the demo does not reach Ready
## (with the binaries `make test` built just before)
demo-smoke:
	DEMO_SKIP_BUILD=1 demo/up.sh || { demo/down.sh; exit 1; }
	demo/down.sh

## crds: regenerate crds/ and the chart's copy from the Rust types (tests fail when they drift)
crds:
	$(CARGO) run --locked --quiet --bin flashback-operator -- crds > crds/flashbackrepositories.flashback.tech.yaml
	cp crds/flashbackrepositories.flashback.tech.yaml charts/flashback-operator/crds/

## chart-lint: helm lint --strict of the chart, watching all namespaces and one namespace
chart-lint:
	$(CONTROL_PLANE)/build.sh helm
	target/control-plane/bin/helm lint --strict charts/flashback-operator
	target/control-plane/bin/helm lint --strict charts/flashback-operator \
	  --set watchNamespace=team-a --set leaderElection.enabled=false

## bench: benchmarks that print their figures (release build; not part of `make test`)
bench: control-plane
	$(CARGO) bench --locked --bench emulator_throughput
	$(CARGO) bench --locked --bench operator_scale --no-run
	$(CONTROL_PLANE)/with.sh $(CARGO) bench --locked --bench operator_scale
