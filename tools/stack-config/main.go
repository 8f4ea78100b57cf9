// stack-config reads Pulumi.<stack>.yaml files with the Pulumi CLI's own loader and prints
// for each, on one line, JSON {"config": {key: the string the CLI hands the program}} or
// {"error": "..."} when the CLI refuses the file. Usage: stack-config PROJECT FILE...
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/common/encoding"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: stack-config PROJECT FILE...")
		os.Exit(2)
	}
	for _, path := range os.Args[2:] {
		fmt.Println(load(os.Args[1], path))
	}
}

func load(projectName, path string) string {
	out := map[string]any{}
	b, err := os.ReadFile(path)
	if err == nil {
		project := &workspace.Project{Name: tokens.PackageName(projectName)}
		var stack *workspace.ProjectStack
		stack, err = workspace.LoadProjectStackBytes(nil, project, b, path, encoding.YAML)
		if err == nil {
			values := map[string]string{}
			for key, value := range stack.Config {
				if value.Secure() {
					values[key.String()] = "[secure]"
					continue
				}
				text, valueErr := value.Value(config.NopDecrypter)
				if valueErr != nil {
					err = valueErr
					break
				}
				values[key.String()] = text
			}
			out["config"] = values
		}
	}
	if err != nil {
		out = map[string]any{"error": err.Error()}
	}
	text, _ := json.Marshal(out)
	return string(text)
}
