// Package config parses a service's typed configuration struct from the environment (struct tags
// `env:"NAME" envDefault:"…"`) and validates it, so that a bad setting stops the service at start
// with an error that names the variable.
package config

import (
	"fmt"

	"github.com/caarlos0/env/v11"
)

// Validator is implemented by configuration structs that check themselves.
type Validator interface{ Validate() error }

// Load fills cfg (a pointer to a struct) from the environment, then validates it.
func Load(cfg any) error {
	if err := env.Parse(cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	return nil
}

// Defaults fills cfg with the envDefault values only, ignoring the environment.
func Defaults(cfg any) error {
	return env.ParseWithOptions(cfg, env.Options{Environment: map[string]string{}})
}
