//! The operator under real GitOps engines, built from the Go module proxy
//! (`tests/control-plane/build.sh flux` and `argocd`): Flux's controllers, and Argo CD's
//! application-controller, repo-server and redis, run against the local control plane and a
//! Git server on loopback (`tests/gitops/git-http.py`), applying what a test commits. What
//! users rely on: the engine waits for the operator, says why an object is broken, carries a
//! commit to the remote, prunes what leaves Git, does not fight the operator's writes, and
//! installs the chart with the CRDs managed apart.

mod argocd;
mod flux;
mod storage;
