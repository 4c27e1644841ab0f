package search

import (
	"net/url"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// subsetConflict rejects _elements together with a _summary other than
// false: the spec says they are not to be combined, and neither would say
// what the other keeps. Lenient handling drops _elements.
func (r *Request) subsetConflict(q url.Values, lenient bool) error {
	if len(q["_elements"]) == 0 {
		return nil
	}
	for _, v := range q["_summary"] {
		if v != "false" {
			r.Subset.Elements = nil
			return r.tolerate(fault.New(fault.Invalid, "_elements", "_elements cannot be combined with _summary=%s", v), lenient)
		}
	}
	return nil
}

// ParseSubset parses the _summary and _elements parameters of a read or
// vread (the others do not apply to it and are ignored). With lenient
// handling, what is wrong is skipped; a read has no Bundle to report it in.
func ParseSubset(typ string, q url.Values, lenient bool) (fhir.Subset, error) {
	r := &Request{Type: typ}
	for _, name := range []string{"_summary", "_elements"} {
		for _, v := range q[name] {
			var err error
			if name == "_summary" && v == "count" {
				err = fault.New(fault.Invalid, "_summary", "_summary=count applies to searches, not to a read")
			} else {
				_, err = r.control(name, v)
			}
			if err := r.tolerate(err, lenient); err != nil {
				return fhir.Subset{}, err
			}
		}
	}
	if err := r.subsetConflict(q, lenient); err != nil {
		return fhir.Subset{}, err
	}
	return r.Subset, nil
}
