# The two commands a newcomer needs: `make demo` and `make test`. Everything they need
# (the control plane binaries included) is built on first use and cached outside the clone.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CONTROL_PLANE := tests/control-plane
CARGO ?= cargo

IMAGE_PROFILE ?= release

.PHONY: test unit fmt-check clippy build-tests control-plane control-plane-node flux argocd demo demo-down demo-smoke crds docs bench chart-lint
.PHONY: image publish image-context node-up node-down demo-dev demo-dev-down chaos

## test: formatting, lints, unit, integration and end-to-end tests against a real API server
## (and, in tests/node.rs, the image and the chart on a cluster with a real node),
## then the demo once from start to Ready
test: fmt-check clippy control-plane control-plane-node flux argocd build-tests
	$(CONTROL_PLANE)/with.sh $(CARGO) test --workspace --locked
	$(MAKE) demo-smoke

## unit: every test that needs no control plane: the client's and the emulator's own tests,
## the operator's unit tests (the generated reference pages included), the client against the
## emulator over HTTP, the workspace's boundaries and the docs' links; no tool to build, no
## cluster to start
unit:
	$(CARGO) test --workspace --locked --exclude flashback-operator
	$(CARGO) test --locked --lib --bins
	$(CARGO) test --locked --test integration -- client:: layout:: docs::

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --locked --all-targets -- -D warnings

# The emulator binary the tests run (`support::emulator_bin` asks cargo for it with this same
# command, a no-op once built here).
build-tests:
	$(CARGO) test --workspace --locked --no-run
	$(CARGO) build --locked --package flashback-emulator --bin flashback-emulator

## control-plane: build (once per machine) kube-apiserver, kubectl, etcd, helm,
## kube-controller-manager (its garbage collector runs beside the API server), promtool and the
## kstatus checker, and install Lua (the tools the tests run)
control-plane:
	$(CONTROL_PLANE)/build.sh all
	$(CONTROL_PLANE)/build.sh promtool
	$(CONTROL_PLANE)/build.sh integrations

## flux: build (once per machine) Flux's source-controller, kustomize-controller and
## helm-controller, for the GitOps tests (tests/gitops/)
flux:
	$(CONTROL_PLANE)/build.sh flux

## argocd: build (once per machine) Argo CD's application-controller and repo-server, and
## install redis and git from Debian, for the GitOps tests (tests/gitops/)
argocd:
	$(CONTROL_PLANE)/build.sh argocd

## control-plane-node: also build (once per machine) kubelet, kube-controller-manager,
## kube-scheduler, containerd, the pause image, kube-proxy, the CNI plugins, CoreDNS, the
## registry, kube-router and the netprobe image, and install runc, podman, skopeo, iptables,
## ipset and nftables when missing
control-plane-node: control-plane
	$(CONTROL_PLANE)/build.sh all-node

## image: build the flashback-operator image with podman (no daemon, nothing pulled), write
## target/image/flashback-operator-<version>.oci.tar (IMAGE_PROFILE=debug for a quick one) and,
## when the local cluster is up, push it and the chart to its registry (make publish)
image:
	IMAGE_PROFILE=$(IMAGE_PROFILE) demo/image.sh build
	demo/publish.sh --if-running

## publish: push the built image and the chart to REGISTRY (default: the local cluster's)
publish:
	demo/publish.sh

## image-context: only prepare target/image/context/, e.g. for `docker build -f Containerfile target/image/context`
image-context:
	IMAGE_PROFILE=$(IMAGE_PROFILE) demo/image.sh context

## node-up / node-down: the local cluster with a node (containerd, kubelet, a pod network,
## kube-proxy, CoreDNS, a registry) in a network namespace of its own, nothing installed
node-up: control-plane-node
	$(CONTROL_PLANE)/up.sh --node

node-down:
	$(CONTROL_PLANE)/down.sh --node

## demo: the image, the local cluster with its node, the image and the chart pushed to its
## registry, the emulator and the operator installed by Helm (the operator from oci://), the
## examples applied and watched until Ready; `make demo GITOPS=flux`: Flux installs the
## operator and applies the examples from a Git repository instead
demo: control-plane-node image $(if $(filter flux,$(GITOPS)),flux)
	DEMO_SKIP_IMAGE=1 GITOPS=$(GITOPS) demo/node-up.sh

## demo-down: remove everything `make demo` (or `make demo-dev`) started
demo-down:
	demo/node-down.sh
	demo/down.sh

## demo-dev: the faster developer mode: the operator as a host process against the plain
## control plane (no image, no node)
demo-dev: control-plane
	demo/up.sh

## demo-dev-down: stop everything `make demo-dev` started
demo-dev-down:
	demo/down.sh

## demo-smoke: `make demo-dev` then `make demo-dev-down`, failing if the demo does not reach
## Ready (with the binaries `make test` built just before; the Helm path on the node is tested
## by tests/node.rs)
demo-smoke:
	DEMO_SKIP_BUILD=1 demo/up.sh || { demo/down.sh; exit 1; }
	demo/down.sh

## crds: regenerate crds/ and the chart's copy (files/crds/) from the Rust types (tests fail when they drift)
crds:
	$(CARGO) run --locked --quiet --bin flashback-operator -- crds --dir crds
	cp crds/*.yaml charts/flashback-operator/files/crds/

## docs: regenerate docs/reference/ (the resources' fields, the chart's values, the flags, the
## metrics, the reasons) from their sources (a unit test fails when a page drifts)
docs:
	$(CARGO) run --locked --quiet --bin flashback-operator -- docs --dir docs/reference

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

## chaos: the operator under fire (SIGKILLs during a burst, API faults, a control plane restart,
## a hostile tenant beside an honest one); prints its figures, exits non-zero on a miss.
## CHAOS_OBJECTS (default 1000) sets the size of the burst. Not part of `make test`.
chaos: control-plane
	$(CARGO) bench --locked --bench chaos --no-run
	$(CONTROL_PLANE)/with.sh $(CARGO) bench --locked --bench chaos
