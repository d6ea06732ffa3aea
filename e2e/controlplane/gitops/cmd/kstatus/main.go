// Command kstatus prints the kstatus status (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what
// Flux's health checks use) of each Kubernetes object in the given YAML files, one JSON line each:
//
//	kstatus FILE...   # {"file": ..., "status": "Current"|"InProgress"|"Failed"|..., "message": ...}
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kstatus FILE...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// Through JSON, as the API server's objects reach Flux: integers stay int64.
		doc, err := yaml.YAMLToJSON(raw)
		if err != nil {
			fmt.Fprintln(os.Stderr, path+":", err)
			os.Exit(2)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(doc); err != nil {
			fmt.Fprintln(os.Stderr, path+":", err)
			os.Exit(2)
		}
		res, err := status.Compute(obj)
		if err != nil {
			fmt.Fprintln(os.Stderr, path+":", err)
			os.Exit(2)
		}
		out, _ := json.Marshal(map[string]string{"file": path, "status": res.Status.String(), "message": res.Message})
		fmt.Println(string(out))
	}
}
