//! The operator under real GitOps engines: Flux's controllers, built from the Go module proxy
//! (`tests/control-plane/build.sh flux`), run against the local control plane and a Git server
//! on loopback (`tests/gitops/git-http.py`), applying what a test commits. What users rely on:
//! the engine waits for the operator, says why an object is broken, carries a commit to the
//! remote, prunes what leaves Git, does not fight the operator's writes, and installs the
//! chart.

mod flux;
