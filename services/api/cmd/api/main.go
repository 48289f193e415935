// Command api runs surveyhooks' api service; configuration comes from the environment.
package main

import (
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/api"
)

func main() { service.Main("api", api.Run) }
