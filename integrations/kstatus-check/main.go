// kstatus-check reads one Kubernetes object as JSON on stdin and prints, as one JSON line,
// how the tools that judge it by its status see it:
//
//   - "kstatus": sigs.k8s.io/cli-utils' kstatus (`kubectl wait`-like tools, kpt, Config Sync);
//   - "fluxKstatus": Flux's fork of kstatus, which `wait: true` and `healthChecks` of a Flux
//     Kustomization use for kinds without a health check expression;
//   - "fluxCel": with -kustomization FILE, the healthCheckExprs of that Flux Kustomization
//     for the object's kind, evaluated by Flux's own evaluator.
//
// The operator's tests feed it objects the operator wrote (tests/integrations.rs).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	fluxkstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// verdict is one tool's judgement: a kstatus status and its message, and the error the tool
// reported, if any.
type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

type report struct {
	Kstatus     verdict  `json:"kstatus"`
	FluxKstatus verdict  `json:"fluxKstatus"`
	FluxCel     *verdict `json:"fluxCel,omitempty"`
}

// fluxKustomization is the part of a Flux Kustomization this program reads.
type fluxKustomization struct {
	Spec struct {
		HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
	} `json:"spec"`
}

func main() {
	kustomizationFile := flag.String("kustomization", "",
		"a Flux Kustomization whose healthCheckExprs are evaluated too")
	flag.Parse()

	text, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// As client-go decodes objects: whole numbers as int64, which kstatus insists on.
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(text); err != nil {
		fail("stdin is not a Kubernetes object: %v", err)
	}

	var out report
	if result, err := status.Compute(u.DeepCopy()); err != nil {
		out.Kstatus = verdict{Error: err.Error()}
	} else {
		out.Kstatus = verdict{Status: result.Status.String(), Message: result.Message}
	}
	if result, err := fluxkstatus.Compute(u.DeepCopy()); err != nil {
		out.FluxKstatus = verdict{Error: err.Error()}
	} else {
		out.FluxKstatus = verdict{Status: result.Status.String(), Message: result.Message}
	}
	if *kustomizationFile != "" {
		v := evaluateFluxCel(*kustomizationFile, u)
		out.FluxCel = &v
	}

	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("writing the report: %v", err)
	}
}

// evaluateFluxCel judges u with the healthCheckExprs the Kustomization in path gives for its
// apiVersion and kind, as Flux's kustomize-controller does.
func evaluateFluxCel(path string, u *unstructured.Unstructured) verdict {
	text, err := os.ReadFile(path)
	if err != nil {
		fail("reading %s: %v", path, err)
	}
	var k fluxKustomization
	if err := yaml.Unmarshal(text, &k); err != nil {
		fail("parsing %s: %v", path, err)
	}
	for _, check := range k.Spec.HealthCheckExprs {
		if check.APIVersion != u.GetAPIVersion() || check.Kind != u.GetKind() {
			continue
		}
		evaluator, err := fluxcel.NewStatusEvaluator(&check.HealthCheckExpressions)
		if err != nil {
			fail("the healthCheckExprs of %s for %s: %v", path, check.Kind, err)
		}
		result, err := evaluator.Evaluate(context.Background(), u.DeepCopy())
		if err != nil {
			// What Flux's status reader makes of a failed evaluation: Unknown, which it keeps
			// waiting on (and reports when its timeout ends).
			return verdict{Status: "Unknown", Error: err.Error()}
		}
		return verdict{Status: result.Status.String(), Message: result.Message}
	}
	fail("%s has no healthCheckExprs for %s %s", path, u.GetAPIVersion(), u.GetKind())
	return verdict{}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus-check: "+format+"\n", args...)
	os.Exit(2)
}
