// Command bench is `make bench`: it runs every scenario of the surveyhooks benchmark once against
// the pipeline started as separate processes, prints a table and writes the figures as JSON.
// It needs CLICKHOUSE_ADDR (make bench starts a local ClickHouse) and exits non-zero only when
// the pipeline could not be measured at all — missed goals are reported, not failed.
//
//	go run ./services/loadgen/cmd/bench -out bench/results.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/surveyhooks/surveyhooks/services/loadgen/scenario"
)

func main() {
	out := flag.String("out", "bench/results.json", "where to write the results as JSON")
	profile := flag.String("profile", "", "where to write the throughput CPU profiles' top functions (default: profile-throughput.txt beside -out; \"-\" for none)")
	window := flag.Duration("window", 20*time.Second, "measured time per scenario")
	warmup := flag.Duration("warmup", 5*time.Second, "unmeasured time before each window")
	partitions := flag.Int("partitions", 12, "partitions of every topic (KAFKA_PARTITIONS)")
	concurrency := flag.Int("concurrency", 50, "per-endpoint concurrency of the delivery service, and the baseline's")
	only := flag.String("only", "", "comma-separated scenarios to run (baseline, throughput, fanout, latency, isolation, slow_flood, ordered, fairness, http_ingest, cpu_at_400, many_endpoints, scale_out, memory); latency needs throughput, isolation needs latency, cpu_ratio and the ratios need baseline")
	env := flag.String("env", "", "comma-separated KEY=VALUE settings added to every service's environment (e.g. DELIVERY_ADAPTIVE_CONCURRENCY=false)")
	keep := flag.Bool("keep", false, "keep the service binaries and logs (the folder is printed)")
	flag.Parse()

	switch *profile {
	case "":
		*profile = filepath.Join(filepath.Dir(*out), "profile-throughput.txt")
	case "-":
		*profile = ""
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := scenario.Run(ctx, scenario.Options{
		RepoRoot:       root,
		ClickHouseAddr: os.Getenv("CLICKHOUSE_ADDR"),
		ClickHouseDir:  os.Getenv("SURVEYHOOKS_CLICKHOUSE_DIR"),
		Partitions:     *partitions,
		Concurrency:    *concurrency,
		Window:         *window,
		Warmup:         *warmup,
		ProfileOut:     *profile,
		KeepDir:        *keep,
		Only:           splitList(*only),
		Env:            splitList(*env),
		Progress:       os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if res == nil {
			os.Exit(1)
		}
	}
	fmt.Println()
	res.Table(os.Stdout)
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err == nil {
		err = os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: writing results:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s\n", *out)
	readme := filepath.Join(filepath.Dir(*out), "README.md")
	if ok, err := updateReadme(readme, res); err != nil {
		fmt.Fprintln(os.Stderr, "bench: updating the table in", readme+":", err)
	} else if ok {
		fmt.Printf("updated the table in %s\n", readme)
	}
	if *profile != "" {
		if _, err := os.Stat(*profile); err == nil {
			fmt.Printf("wrote %s\n", *profile)
		}
	}
}

// repoRoot is the folder holding go.work, searched upwards from the working directory: the
// service binaries are built from there.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory: run from the repository")
		}
		dir = parent
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// The README beside the results shows the latest table between these markers.
const tableStart, tableEnd = "<!-- bench:table -->", "<!-- /bench:table -->"

// updateReadme replaces the table between the markers of path, when the file has them.
func updateReadme(path string, res *scenario.Results) (bool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	doc := string(raw)
	i, j := strings.Index(doc, tableStart), strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		return false, nil
	}
	var sb strings.Builder
	res.Table(&sb)
	table := fmt.Sprintf("%s\nRun at %s (`make bench`):\n\n```\n%s```\n", tableStart, res.At, sb.String())
	doc = doc[:i] + table + doc[j:]
	return true, os.WriteFile(path, []byte(doc), 0o644)
}
