// Command fanout runs surveyhooks' fanout service; configuration comes from the environment.
package main

import (
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

func main() { service.Main("fanout", fanout.Run) }
