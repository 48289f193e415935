// Command surveyhooks runs every surveyhooks service in one process with an embedded Kafka, for
// development (`make run`). SURVEYHOOKS_SERVICES=kafka runs only the broker.
package main

import (
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/surveyhooks"
)

func main() { service.Main("surveyhooks", surveyhooks.Run) }
