package envelope

import (
	"fmt"
	"slices"

	"github.com/surveyhooks/surveyhooks/pkg/envelope/expr"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Renderer is one webhook configuration made ready for fan-out: its format or payload version
// checked and its filter and transform compiled. Build one per webhook revision (compiling is
// milliseconds; evaluating is microseconds) and use it for every event; it is safe for concurrent
// use. A webhook without filter or transform costs no CEL work at all.
type Renderer struct {
	wh        *pb.Webhook
	filter    *expr.Filter
	transform *expr.Transform
}

// NewRenderer checks wh's format and payload version and compiles its filter and transform. The
// error names the webhook field at fault (format, payload_version, filter or transform).
func NewRenderer(wh *pb.Webhook) (*Renderer, error) {
	r := &Renderer{wh: wh}
	if err := ValidateFormat(wh.GetFormat()); err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	if v := wh.GetPayloadVersion(); wh.GetFormat() == FormatEnvelope && v != "" && !slices.Contains(Versions, v) {
		return nil, fmt.Errorf("payload_version: unknown payload version %q (have %v)", v, Versions)
	}
	if src := wh.GetFilter(); src != "" {
		f, err := expr.CompileFilter(src)
		if err != nil {
			return nil, fmt.Errorf("filter: %w", err)
		}
		r.filter = f
	}
	if src := wh.GetTransform(); src != "" {
		t, err := expr.CompileTransform(src)
		if err != nil {
			return nil, fmt.Errorf("transform: %w", err)
		}
		r.transform = t
	}
	return r, nil
}

// Webhook returns the configuration r was built from.
func (r *Renderer) Webhook() *pb.Webhook { return r.wh }

// HasFilter reports whether the webhook has a filter.
func (r *Renderer) HasFilter() bool { return r.filter != nil }

// Match reports whether ev passes the webhook's filter (true when it has none). It does not check
// event types, toggles or the enabled flag: those are fan-out's. An evaluation error is returned
// with false; the caller counts it as "no match".
func (r *Renderer) Match(ev *pb.Event) (bool, error) {
	if r.filter == nil {
		return true, nil
	}
	return r.filter.Match(ev)
}

// Render returns the body for ev: the format (or envelope version), then the transform, written
// as JSON.stringify writes it (see stringify).
func (r *Renderer) Render(ev *pb.Event, opts ...Option) ([]byte, error) {
	body, err := renderFormat(ev, r.wh, collect(opts))
	if err != nil {
		return nil, err
	}
	if r.transform != nil {
		if body, err = r.transform.Apply(ev, body); err != nil {
			return nil, fmt.Errorf("transform: %w", err)
		}
	}
	return stringify(body)
}

// ValidateFilter compiles a filter expression and returns CEL's message when it is not a valid
// filter (for the API to answer 400 in field "filter"). An empty filter is valid: no filter.
func ValidateFilter(src string) error {
	if src == "" {
		return nil
	}
	_, err := expr.CompileFilter(src)
	return err
}

// ValidateTransform compiles a transform expression and returns CEL's message when it is not a
// valid transform (for the API to answer 400 in field "transform"). An empty transform is valid.
func ValidateTransform(src string) error {
	if src == "" {
		return nil
	}
	_, err := expr.CompileTransform(src)
	return err
}
