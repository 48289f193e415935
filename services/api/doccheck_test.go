package api_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/surveyhooks/surveyhooks/services/api"
)

// The OpenAPI document is checked against real answers: every response any test receives must
// have a documented status for its operation and match the documented schema — required members
// present, no undocumented members, types and enums respected. A handler that drifts from the
// document fails every test that touches it.

var (
	docOnce sync.Once
	doc     map[string]any
)

func openAPIDoc(t testing.TB) map[string]any {
	docOnce.Do(func() {
		if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
			panic(fmt.Sprintf("openapi.json does not parse: %v", err))
		}
	})
	return doc
}

// operation finds the documented operation for a request, or nil.
func operation(t testing.TB, method, path string) map[string]any {
	path, _, _ = strings.Cut(path, "?")
	segs := strings.Split(path, "/")
	var best map[string]any
	bestLiterals := -1
	for tmpl, item := range openAPIDoc(t)["paths"].(map[string]any) {
		tsegs := strings.Split(tmpl, "/")
		if len(tsegs) != len(segs) {
			continue
		}
		literals, ok := 0, true
		for i, ts := range tsegs {
			switch {
			case strings.HasPrefix(ts, "{"):
			case ts == segs[i]:
				literals++
			default:
				ok = false
			}
		}
		op, _ := item.(map[string]any)[strings.ToLower(method)].(map[string]any)
		if ok && op != nil && literals > bestLiterals {
			best, bestLiterals = op, literals
		}
	}
	return best
}

// documented says how the answer differs from the document, or nil. It does not fail the test
// itself, as it also runs inside require.Eventually's goroutine.
func documented(t testing.TB, method, path string, r reply) error {
	op := operation(t, method, path)
	if op == nil {
		return nil // an unknown route or method: answered by the router's JSON 404/405
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(r.status)].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s answered %d, which the OpenAPI document does not list: %s", method, path, r.status, r)
	}
	content, _ := resp["content"].(map[string]any)
	if content == nil {
		if strings.TrimSpace(string(r.raw)) != "" {
			return fmt.Errorf("%s %s %d is documented without a body, got %s", method, path, r.status, r.raw)
		}
		return nil
	}
	schema := content["application/json"].(map[string]any)["schema"].(map[string]any)
	var v any
	if err := json.Unmarshal(r.raw, &v); err != nil {
		return fmt.Errorf("%s %s %d: %w", method, path, r.status, err)
	}
	if err := conforms(schema, v, "$"); err != nil {
		return fmt.Errorf("%s %s %d does not match the OpenAPI document: %w\n%s", method, path, r.status, err, r.raw)
	}
	return nil
}

func resolve(schema map[string]any) map[string]any {
	for {
		ref, ok := schema["$ref"].(string)
		if !ok {
			return schema
		}
		node := any(doc)
		for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			node = node.(map[string]any)[p]
		}
		schema = node.(map[string]any)
	}
}

// flatten merges allOf parts into one object schema.
func flatten(schema map[string]any) map[string]any {
	schema = resolve(schema)
	parts, ok := schema["allOf"].([]any)
	if !ok {
		return schema
	}
	out := map[string]any{"type": "object", "properties": map[string]any{}, "required": []any{}}
	for _, p := range parts {
		f := flatten(p.(map[string]any))
		for k, v := range f["properties"].(map[string]any) {
			out["properties"].(map[string]any)[k] = v
		}
		if req, ok := f["required"].([]any); ok {
			out["required"] = append(out["required"].([]any), req...)
		}
	}
	return out
}

func conforms(schema map[string]any, v any, at string) error {
	schema = flatten(schema)
	if v == nil {
		if schema["nullable"] == true {
			return nil
		}
		return fmt.Errorf("%s is null", at)
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s is %v, not one of %v", at, v, enum)
	}
	switch schema["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", at)
		}
		props, _ := schema["properties"].(map[string]any)
		req, _ := schema["required"].([]any)
		for _, k := range req {
			if _, ok := obj[k.(string)]; !ok {
				return fmt.Errorf("%s lacks required member %q", at, k)
			}
		}
		extra, _ := schema["additionalProperties"].(map[string]any)
		for k, val := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				if err := conforms(ps, val, at+"."+k); err != nil {
					return err
				}
			} else if extra != nil {
				if err := conforms(extra, val, at+"."+k); err != nil {
					return err
				}
			} else if props != nil {
				return fmt.Errorf("%s has undocumented member %q", at, k)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s is not an array", at)
		}
		for i, it := range arr {
			if err := conforms(schema["items"].(map[string]any), it, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s is not a string", at)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s is not a boolean", at)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("%s is not a number", at)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			return fmt.Errorf("%s is not an integer", at)
		}
	}
	return nil
}
