// Command vkrender renders one of the virtual kubelet's templates (manifests/shadow-pod.tmpl,
// manifests/mesh-script.tmpl) with the data the VK would give it, read as a JSON object, so that
// `make demo` can play the VK's part without InterLink: vkrender TEMPLATE < data.json.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/template"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "vkrender: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: vkrender TEMPLATE < data.json")
	}
	t, err := template.New("").Option("missingkey=error").ParseFiles(args[0])
	if err != nil {
		return fmt.Errorf("parse template: %w", err)
	}
	dec := json.NewDecoder(in)
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	if err := t.Templates()[0].Execute(out, data); err != nil {
		return fmt.Errorf("render %s: %w", args[0], err)
	}
	return nil
}
