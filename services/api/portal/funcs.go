package portal

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
)

func formatPercent(v float64) string { return fmt.Sprintf("%.1f%%", v) }

// funcs are the templates' helpers: formatting only, no data access.
var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ms":    ms,
	"local": func(t time.Time) string { return t.UTC().Format(localTime) },
	"f1":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"esc":   url.PathEscape,
	"outcomeClass": func(o string) string {
		switch o {
		case "success":
			return "ok"
		case "http_retryable", "timeout", "connection_error", "circuit_open":
			return "warn"
		}
		return "bad"
	},
	"words": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	"formatName": func(f string) string {
		if f == "" {
			return "surveyhooks envelope"
		}
		return f
	},
	"duration": func(d time.Duration) string {
		if d <= 0 {
			return "—"
		}
		return d.Round(time.Second).String()
	},
	"contains": func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	},
	"recoverLabel": func(o string) string {
		switch o {
		case "failed":
			return "failed (waiting for a retry or dead)"
		case "dead":
			return "are dead letters"
		case "skipped":
			return "were skipped (webhook disabled)"
		case "delivered":
			return "were delivered"
		case "all":
			return "all deliveries"
		}
		return o
	},
	"jobClass": func(status string) string {
		switch status {
		case "done":
			return "ok"
		case "running":
			return "warn"
		}
		return "bad"
	},
	"invalid": func(f *form, field string) bool { return f.ErrField == field },
}
