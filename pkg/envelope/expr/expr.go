// Package expr compiles and evaluates the CEL (github.com/google/cel-go) expressions a webhook may
// carry: a filter, which decides whether an event goes to the webhook, and a transform, which
// reshapes the rendered body. Both see the canonical event as `event` (a surveyhooks.v1.Event) and
// its free-form JSON objects as maps; a transform also sees the rendered body as `body`.
//
// Compiling is the expensive part: callers compile once per webhook configuration and evaluate the
// compiled program per event. Evaluation is bounded by a cost limit, never panics on odd data, and
// reports a failure as an error the caller counts. It must never do I/O or keep state between
// evaluations.
package expr

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// MaxLength is the longest expression accepted, in characters.
const MaxLength = 4096

// FilterCostLimit and TransformCostLimit bound one evaluation (CEL cost units: roughly one per
// operation, field access or list element visited). A filter that compares a few fields costs
// tens; the limits leave room for comprehensions over a response's answers while stopping a
// runaway expression from stalling fan-out.
const (
	FilterCostLimit    = 100_000
	TransformCostLimit = 1_000_000
)

// Variables an expression may use besides `event` (and `body` in a transform): the event's
// free-form JSON objects, parsed only when the expression reads them.
const (
	VarEvent         = "event"          // surveyhooks.v1.Event
	VarTraits        = "traits"         // event.user.traits as map(string, dyn)
	VarAccountTraits = "account_traits" // event.account.traits
	VarHiddenFields  = "hidden_fields"  // event.response.hidden_fields
	VarProperties    = "properties"     // event.properties
	VarBody          = "body"           // transforms only: the rendered body as a JSON value
)

// Filter is a compiled filter expression; safe for concurrent use.
type Filter struct {
	src string
	prg cel.Program
}

// Transform is a compiled transform expression; safe for concurrent use.
type Transform struct {
	src string
	prg cel.Program
}

// ErrNotBool is returned when a filter evaluates to something other than a bool.
var ErrNotBool = errors.New("filter did not return a bool")

// envs are built once: building a CEL environment with the event's descriptors takes milliseconds.
var envs = sync.OnceValues(func() (*cel.Env, error) {
	mapVar := cel.MapType(cel.StringType, cel.DynType)
	return cel.NewEnv(
		cel.Types(&pb.Event{}),
		cel.Variable(VarEvent, cel.ObjectType("surveyhooks.v1.Event")),
		cel.Variable(VarTraits, mapVar),
		cel.Variable(VarAccountTraits, mapVar),
		cel.Variable(VarHiddenFields, mapVar),
		cel.Variable(VarProperties, mapVar),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxLength),
		ext.Strings(), ext.Lists(), ext.Math(), ext.Sets(), ext.Bindings(), ext.Encoders(),
	)
})

var transformEnv = sync.OnceValues(func() (*cel.Env, error) {
	base, err := envs()
	if err != nil {
		return nil, err
	}
	return base.Extend(cel.Variable(VarBody, cel.DynType))
})

// CompileFilter parses and type-checks a filter. The error is CEL's message (with the position of
// the problem), fit to show to whoever wrote the expression.
func CompileFilter(src string) (*Filter, error) {
	env, err := envs()
	if err != nil {
		return nil, fmt.Errorf("building the filter environment: %w", err)
	}
	ast, err := compile(env, src)
	if err != nil {
		return nil, err
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("a filter must return a bool, this one returns %s", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(FilterCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("planning the filter: %w", err)
	}
	return &Filter{src: src, prg: prg}, nil
}

// CompileTransform parses and type-checks a transform.
func CompileTransform(src string) (*Transform, error) {
	env, err := transformEnv()
	if err != nil {
		return nil, fmt.Errorf("building the transform environment: %w", err)
	}
	ast, err := compile(env, src)
	if err != nil {
		return nil, err
	}
	t := ast.OutputType()
	if !t.IsExactType(cel.DynType) && t.Kind() != types.MapKind && t.Kind() != types.ListKind {
		return nil, fmt.Errorf("a transform must return a map or a list (the new JSON body), this one returns %s", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(TransformCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("planning the transform: %w", err)
	}
	return &Transform{src: src, prg: prg}, nil
}

func compile(env *cel.Env, src string) (*cel.Ast, error) {
	if src == "" {
		return nil, errors.New("the expression is empty")
	}
	if n := len([]rune(src)); n > MaxLength {
		return nil, fmt.Errorf("the expression is %d characters long, the limit is %d", n, MaxLength)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	return ast, nil
}

// String returns the filter's source.
func (f *Filter) String() string { return f.src }

// String returns the transform's source.
func (t *Transform) String() string { return t.src }

// Match evaluates the filter against ev. An evaluation error (a missing map key, a type mismatch on
// odd data, the cost limit) is returned with false: the caller counts it as "no match".
func (f *Filter) Match(ev *pb.Event) (bool, error) {
	out, _, err := f.prg.Eval(newInput(ev, nil))
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%w: got %s", ErrNotBool, out.Type())
	}
	return bool(b), nil
}

// Apply evaluates the transform with `body` bound to the rendered body and returns the JSON
// encoding of its result, which must be a map or a list. Object keys come out sorted.
func (t *Transform) Apply(ev *pb.Event, body []byte) ([]byte, error) {
	out, _, err := t.prg.Eval(newInput(ev, body))
	if err != nil {
		return nil, err
	}
	switch out.Type() {
	case types.MapType, types.ListType:
	default:
		return nil, fmt.Errorf("the transform returned a %s, not a map or a list", out.Type())
	}
	return marshalValue(out)
}

// input is the activation of one evaluation: the event, and its JSON objects parsed on first use
// (most expressions never touch them).
type input struct {
	ev     *pb.Event
	body   []byte
	parsed map[string]ref.Val
}

func newInput(ev *pb.Event, body []byte) *input { return &input{ev: ev, body: body} }

// ResolveName implements interpreter.Activation.
func (in *input) ResolveName(name string) (any, bool) {
	var raw []byte
	switch name {
	case VarEvent:
		return in.ev, true
	case VarTraits:
		raw = in.ev.GetUser().GetTraits()
	case VarAccountTraits:
		raw = in.ev.GetAccount().GetTraits()
	case VarHiddenFields:
		raw = in.ev.GetResponse().GetHiddenFields()
	case VarProperties:
		raw = in.ev.GetProperties()
	case VarBody:
		if in.body == nil {
			return nil, false
		}
		raw = in.body
	default:
		return nil, false
	}
	if v, ok := in.parsed[name]; ok {
		return v, true
	}
	v := parseJSON(name, raw)
	if in.parsed == nil {
		in.parsed = make(map[string]ref.Val, 2)
	}
	in.parsed[name] = v
	return v, true
}

// Parent implements interpreter.Activation.
func (in *input) Parent() cel.Activation { return nil }
