// Command delivery runs surveyhooks' delivery service; configuration comes from the environment.
package main

import (
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/delivery"
)

func main() { service.Main("delivery", delivery.Run) }
