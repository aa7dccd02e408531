package plugin

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"sort"
)

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// docsPage renders the OpenAPI document as a page, so the two never disagree.
var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}code{background:#eee;padding:0 .2em}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Description}}</p><p>Machine-readable: <a href="/docs/openapi.json">/docs/openapi.json</a></p>
{{range .Ops}}<h2><code>{{.Method}} {{.Path}}</code></h2><p><b>{{.Summary}}</b></p><p>{{.Description}}</p>
<p>Replies: {{range .Codes}}<code>{{.}}</code> {{end}}</p>{{end}}
</body></html>`))

type docOp struct {
	Method, Path, Summary, Description string
	Codes                              []string
}

func serveDocsPage(w http.ResponseWriter, _ *http.Request) {
	var doc struct {
		Info struct {
			Title       string `json:"title"`
			Description string `json:"description"`
		} `json:"info"`
		Paths map[string]map[string]struct {
			Summary     string         `json:"summary"`
			Description string         `json:"description"`
			Responses   map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		http.Error(w, "render docs: "+err.Error(), http.StatusInternalServerError)
		return
	}
	data := struct {
		Title, Description string
		Ops                []docOp
	}{Title: doc.Info.Title, Description: doc.Info.Description}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		for _, method := range slices.Sorted(maps.Keys(doc.Paths[path])) {
			op := doc.Paths[path][method]
			codes := slices.Sorted(maps.Keys(op.Responses))
			sort.Strings(codes)
			data.Ops = append(data.Ops, docOp{Method: method, Path: path, Summary: op.Summary, Description: op.Description, Codes: codes})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = docsPage.Execute(w, data)
}
