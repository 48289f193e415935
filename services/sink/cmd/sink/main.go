// Command sink runs surveyhooks' sink service; configuration comes from the environment.
package main

import (
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

func main() { service.Main("sink", sink.Run) }
