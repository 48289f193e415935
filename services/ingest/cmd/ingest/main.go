// Command ingest runs surveyhooks' ingest service; configuration comes from the environment.
package main

import (
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/ingest"
)

func main() { service.Main("ingest", ingest.Run) }
