package fanout

// CachedRenderers is how many compiled webhook renderers the fan-out holds (tests only).
func (f *FanOut) CachedRenderers() int { return f.renderers.len() }
