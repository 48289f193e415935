package api

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenAPIDocumentsExactlyTheRoutesTheRouterServes compares the router's table with the
// document, both ways. Response shapes are checked against the same document by every HTTP test
// (doccheck_test.go).
func TestOpenAPIDocumentsExactlyTheRoutesTheRouterServes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(OpenAPI(), &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."), "an OpenAPI 3 document")

	var served []string
	for _, rt := range (&Server{}).routes() {
		served = append(served, rt.method+" "+rt.pattern)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	require.Equal(t, served, documented)
}

// TestOpenAPIDocumentIsComplete checks what a client generator relies on: every path parameter is
// declared, every reference resolves, every API operation says how it is authorised and has a
// unique operationId.
func TestOpenAPIDocumentIsComplete(t *testing.T) {
	var doc map[string]any
	require.NoError(t, json.Unmarshal(OpenAPI(), &doc))
	components := doc["components"].(map[string]any)
	resolve := func(v any) map[string]any {
		m := v.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
			got, ok := components[parts[0]].(map[string]any)[parts[1]].(map[string]any)
			require.True(t, ok, "unresolved %s", ref)
			return got
		}
		return m
	}
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"([^"]+)"`).FindAllStringSubmatch(string(OpenAPI()), -1) {
		resolve(map[string]any{"$ref": ref[1]})
	}
	ids := map[string]bool{}
	for path, item := range doc["paths"].(map[string]any) {
		item := item.(map[string]any)
		var shared []any
		if p, ok := item["parameters"].([]any); ok {
			shared = p
		}
		for method, op := range item {
			if method == "parameters" {
				continue
			}
			op := op.(map[string]any)
			name := strings.ToUpper(method) + " " + path
			id, _ := op["operationId"].(string)
			require.NotEmpty(t, id, name)
			require.False(t, ids[id], "operationId %s is used twice", id)
			ids[id] = true
			params := slices.Clone(shared)
			if p, ok := op["parameters"].([]any); ok {
				params = append(params, p...)
			}
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				require.True(t, slices.ContainsFunc(params, func(p any) bool {
					rp := resolve(p)
					return rp["in"] == "path" && rp["name"] == m[1]
				}), "%s does not declare path parameter %s", name, m[1])
			}
			sec, ok := op["security"].([]any)
			require.True(t, ok, "%s says nothing about authorisation", name)
			if strings.HasPrefix(path, "/v1/") {
				require.NotEmpty(t, sec, "%s must require a credential", name)
				require.Contains(t, op["responses"], "401", name)
			}
		}
	}
}
