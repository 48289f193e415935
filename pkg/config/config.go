// Package config parses a service's typed configuration struct from the environment (struct tags
// `env:"NAME" envDefault:"…"`) or the matching command-line flags (--name) and validates it, so that a bad setting stops the service at start
// with an error that names the variable. Flags and defaults are applied to an Env, a copy of the
// environment: it never writes the process environment.
package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Validator is implemented by configuration structs that check themselves.
type Validator interface{ Validate() error }

// Env is a set of variables by name, read by LoadEnv instead of the process environment:
// Environ's copy of it, with flags (ApplyFlags) and defaults (SetDefault) applied on top.
type Env map[string]string

// Environ returns a copy of the process environment.
func Environ() Env {
	e := Env{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			e[k] = v
		}
	}
	return e
}

// Lookup returns the value of variable k and whether it is set.
func (e Env) Lookup(k string) (string, bool) {
	v, ok := e[k]
	return v, ok
}

// Get returns the value of variable k, "" when unset.
func (e Env) Get(k string) string { return e[k] }

// SetDefault sets variable k to v when it is unset or empty, and reports whether it did.
func (e Env) SetDefault(k, v string) bool {
	if e[k] != "" {
		return false
	}
	e[k] = v
	return true
}

// Load fills cfg (a pointer to a struct) from the process environment, then validates it.
func Load(cfg any) error { return LoadEnv(cfg, Environ()) }

// LoadEnv fills cfg (a pointer to a struct) from e, then validates it.
func LoadEnv(cfg any, e Env) error {
	if err := env.ParseWithOptions(cfg, env.Options{Environment: e}); err != nil {
		return fmt.Errorf("configuration: %s%w", culprits(cfg, e), err)
	}
	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	return nil
}

// culprits names the variables whose values do not parse ("DELIVERY_TIMEOUT: "), since the
// parser's own error names only the struct field. Each variable that is set is tried alone.
func culprits(cfg any, e Env) string {
	vars, err := Vars(cfg)
	if err != nil {
		return ""
	}
	var bad []string
	for _, v := range vars {
		val, ok := e.Lookup(v.Name)
		if !ok {
			continue
		}
		fresh := reflect.New(reflect.TypeOf(cfg).Elem()).Interface()
		if env.ParseWithOptions(fresh, env.Options{Environment: map[string]string{v.Name: val}}) != nil {
			bad = append(bad, fmt.Sprintf("%s=%q", v.Name, val))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return strings.Join(bad, ", ") + ": "
}

// Defaults fills cfg with the envDefault values only, ignoring the environment.
func Defaults(cfg any) error {
	return env.ParseWithOptions(cfg, env.Options{Environment: map[string]string{}})
}

// Var is one variable a configuration accepts.
type Var struct {
	Name    string // KAFKA_BROKERS
	Flag    string // --kafka-brokers
	Default string
}

// Vars lists the variables cfg (a pointer to a struct) accepts, in declaration order.
func Vars(cfg any) ([]Var, error) {
	params, err := env.GetFieldParams(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]Var, 0, len(params))
	for _, p := range params {
		out = append(out, Var{Name: p.Key, Flag: FlagName(p.Key), Default: p.DefaultValue})
	}
	return out, nil
}

// FlagName is the command-line flag that sets variable name: KAFKA_BROKERS → --kafka-brokers.
func FlagName(name string) string {
	return "--" + strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// ApplyFlags sets variables of e from command-line flags (--kafka-brokers=a:9092 or
// --kafka-brokers a:9092; one or two dashes), each naming one of vars or extra. A flag wins over
// the variable it names. Unknown flags and missing values are errors naming the flag.
func ApplyFlags(e Env, args []string, vars []Var, extra ...string) error {
	names := map[string]string{}
	for _, v := range vars {
		names[v.Flag] = v.Name
	}
	for _, e := range extra {
		names[FlagName(e)] = e
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return fmt.Errorf("unexpected argument %q (flags look like --kafka-brokers=127.0.0.1:9092)", a)
		}
		flag, val, hasVal := strings.Cut(a, "=")
		flag = "--" + strings.TrimLeft(flag, "-")
		name, ok := names[flag]
		if !ok {
			return fmt.Errorf("unknown flag %s (--help lists them)", flag)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return fmt.Errorf("flag %s needs a value", flag)
			}
			i++
			val = args[i]
		}
		e[name] = val
	}
	return nil
}
