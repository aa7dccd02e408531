package vkmesh

// InputError is a mesh input refused: Field is "mesh.<mesh.json field>" for a value (missing,
// contradictory or invalid) or "pod.metadata.annotations[<name>]" for an annotation that does not
// parse. Reason never holds a key or the tunnel's path prefix.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }
