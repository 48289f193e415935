package expr

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// parseJSON turns a JSON object (or, for the body, any JSON value) into a CEL value. Integral
// numbers become ints, so that `body.payload.nps.score + 1` works as it reads; other numbers become
// doubles. Empty input is an empty map: an event without traits has no traits.
func parseJSON(name string, raw []byte) ref.Val {
	if len(raw) == 0 {
		return types.DefaultTypeAdapter.NativeToValue(map[string]any{})
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return types.NewErr("%s is not valid JSON: %v", name, err)
	}
	if _, isObject := v.(map[string]any); !isObject && name != VarBody {
		return types.NewErr("%s is not a JSON object", name)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

// numbers replaces json.Number by int64 when integral and in range, float64 otherwise.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}

// marshalValue encodes a CEL value as JSON.
func marshalValue(v ref.Val) ([]byte, error) {
	native, err := toJSON(v, 0)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(native)
	if err != nil {
		return nil, fmt.Errorf("encoding the transform's result: %w", err)
	}
	return b, nil
}

const maxDepth = 100

var errDepth = errors.New("the transform's result is nested too deeply")

// toJSON converts a CEL value to the Go value encoding/json encodes as its JSON form.
func toJSON(v ref.Val, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errDepth
	}
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		return uint64(x), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("the transform's result holds %v, which JSON cannot represent", f)
		}
		return f, nil
	case types.String:
		return string(x), nil
	case types.Bytes:
		return base64.StdEncoding.EncodeToString(x), nil
	case types.Timestamp:
		return x.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return x.Duration.String(), nil
	case *types.Optional:
		if !x.HasValue() {
			return nil, nil
		}
		return toJSON(x.GetValue(), depth+1)
	case traits.Mapper:
		out := map[string]any{}
		for it := x.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("the transform's result has a map key of type %s; JSON keys are strings", k.Type())
			}
			e, err := toJSON(x.Get(k), depth+1)
			if err != nil {
				return nil, err
			}
			out[string(ks)] = e
		}
		return out, nil
	case traits.Lister:
		out := []any{}
		for it := x.Iterator(); it.HasNext() == types.True; {
			e, err := toJSON(it.Next(), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	if m, ok := v.Value().(proto.Message); ok {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encoding a %s in the transform's result: %w", v.Type(), err)
		}
		return decodeJSON(b)
	}
	if types.IsError(v) {
		return nil, v.(*types.Err)
	}
	return nil, fmt.Errorf("the transform's result holds a %s, which has no JSON form", v.Type())
}
