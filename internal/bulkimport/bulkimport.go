// Package bulkimport loads NDJSON files of FHIR resources into the store, as
// the Bulk Data export writes them: one file per resource type, one
// resource per line, with the ids of the server that exported them. Each
// resource becomes the next version of its Type/id by the rules of an
// update (resource.Service.Import), in batches, reading the files line by
// line.
//
// Conditional references (Patient?identifier=system|value) are resolved
// against the store once every resource without them is stored: a resource
// that has some is set aside in the first pass (only its line number is
// kept) and read again in a second pass, which rewrites them to Type/id.
package bulkimport

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
)

// Source is one NDJSON input.
type Source struct {
	Name string // reported with line numbers; never resource content
	// Type is the resourceType every line must have; "" accepts any.
	Type string
	// Open opens the input; the second pass opens it again.
	Open func() (io.ReadCloser, error)
}

// DirSources lists the NDJSON files of dir that are named after a resource
// type (Patient.ndjson, Patient.000.ndjson), in name order, and the names
// of the other *.ndjson files, which are not imported (a bulk export's
// log.ndjson, for one).
func DirSources(dir string) (sources []Source, skipped []string, err error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(names)
	for _, path := range names {
		name := filepath.Base(path)
		typ, _, _ := strings.Cut(name, ".")
		if !fhir.IsResourceType(typ) {
			skipped = append(skipped, name)
			continue
		}
		sources = append(sources, Source{Name: name, Type: typ, Open: func() (io.ReadCloser, error) { return os.Open(path) }})
	}
	return sources, skipped, nil
}

// Options tune an Importer; zero values take the defaults.
type Options struct {
	BatchSize    int // resources per store batch; default 500
	MaxLineBytes int // longest line accepted; default 15 MiB (a store document's limit)
	MaxErrors    int // line errors kept in the report (all are counted); default 1000
}

// Importer loads sources through a resource service.
type Importer struct {
	svc *resource.Service
	reg *fhir.Registry
	o   Options
}

// New returns an Importer writing through svc and resolving conditional
// references with the search parameters of reg.
func New(svc *resource.Service, reg *fhir.Registry, o Options) *Importer {
	if o.BatchSize <= 0 {
		o.BatchSize = 500 // below the store's repair window (1000 changes)
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = 15 << 20
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 1000
	}
	return &Importer{svc: svc, reg: reg, o: o}
}

// Report is what an import did. It holds counts, file names, line numbers
// and error kinds with their expressions; the issues' diagnostics may
// quote content, so print them only to whom sent it.
type Report struct {
	Types   map[string]*Counts // by resourceType ("" for lines of no known type)
	Errors  []LineError        // the first MaxErrors, in the order found
	Skipped []string           // inputs not imported
}

// Counts are the lines of one resource type by what became of them.
type Counts struct {
	Lines, Created, Updated, Unchanged, Failed int
}

// LineError is a line that was not imported.
type LineError struct {
	Source string
	Line   int
	Err    *fault.Error
}

func (r *Report) counts(typ string) *Counts {
	c := r.Types[typ]
	if c == nil {
		c = &Counts{}
		r.Types[typ] = c
	}
	return c
}

// Failed is the number of lines not imported.
func (r *Report) Failed() int {
	n := 0
	for _, c := range r.Types {
		n += c.Failed
	}
	return n
}

// run is the state of one import.
type run struct {
	im      *Importer
	report  *Report
	batch   []item
	pending map[int][]int // source index → lines with conditional references
	// resolved caches conditional references that matched one resource.
	resolved map[string]string
	// wanted are the distinct conditional references seen, for prefetch.
	wanted   map[string]bool
	progress bool // a resource was stored since the last round began
}

// item is a parsed line waiting in a batch.
type item struct {
	src  int
	line int
	res  *fhir.Resource
}

// Run imports sources. Bad lines are reported and skipped; the error is a
// failure of the store or of reading an input, which stops the import
// (what was committed stays: every resource is its own commit).
func (im *Importer) Run(ctx context.Context, sources []Source) (*Report, error) {
	index := map[string]int{}
	for i, src := range sources {
		index[src.Name] = i
	}
	r := &run{im: im, report: &Report{Types: map[string]*Counts{}}, pending: map[int][]int{}, resolved: map[string]string{}, wanted: map[string]bool{}}
	for i, src := range sources {
		err := im.each(src, nil, func(line int, b []byte, tooLong bool) error {
			return r.first(ctx, sources, i, line, b, tooLong)
		})
		if err != nil {
			return r.report, err
		}
	}
	if err := r.flush(ctx, sources); err != nil {
		return r.report, err
	}
	err := r.conditional(ctx, sources)
	// The second pass reports after the first: back to input order.
	slices.SortStableFunc(r.report.Errors, func(a, b LineError) int {
		return cmp.Or(cmp.Compare(index[a.Source], index[b.Source]), cmp.Compare(a.Line, b.Line))
	})
	return r.report, err
}

// first handles a line in the first pass.
func (r *run) first(ctx context.Context, sources []Source, src, line int, b []byte, tooLong bool) error {
	res, err := r.im.parse(sources[src], b, tooLong)
	typ := sources[src].Type
	switch {
	case res != nil:
		typ = res.Type()
	case typ == "" && !tooLong:
		typ = declaredType(b)
	}
	r.report.counts(typ).Lines++
	switch {
	case err != nil:
		r.fail(sources[src], line, typ, err)
		return nil
	case r.setAside(res):
		r.pending[src] = append(r.pending[src], line)
		return nil
	}
	return r.add(ctx, sources, item{src: src, line: line, res: res})
}

func (im *Importer) parse(src Source, b []byte, tooLong bool) (*fhir.Resource, error) {
	if tooLong {
		return nil, fault.New(fault.TooLarge, "", "the line is longer than %d bytes", im.o.MaxLineBytes)
	}
	res, err := fhir.ParseResourceWith(b, fhir.ParseOptions{ConditionalReferences: true})
	switch {
	case err != nil:
		return nil, err
	case src.Type != "" && res.Type() != src.Type:
		return res, fault.New(fault.Invalid, res.Type(), "a %s in the file of %s", res.Type(), src.Type)
	case res.ID() == "":
		return res, fault.New(fault.Invalid, res.Type()+".id", "the resource has no id; import keeps the ids of its input")
	}
	return res, nil
}

func (r *run) fail(src Source, line int, typ string, err error) {
	r.report.counts(typ).Failed++
	if len(r.report.Errors) < r.im.o.MaxErrors {
		r.report.Errors = append(r.report.Errors, LineError{Source: src.Name, Line: line, Err: fault.As(err)})
	}
}

func (r *run) add(ctx context.Context, sources []Source, it item) error {
	r.batch = append(r.batch, it)
	if len(r.batch) < r.im.o.BatchSize {
		return nil
	}
	return r.flush(ctx, sources)
}

// flush stores the batch.
func (r *run) flush(ctx context.Context, sources []Source) error {
	if len(r.batch) == 0 {
		return nil
	}
	res := make([]*fhir.Resource, len(r.batch))
	for i, it := range r.batch {
		res[i] = it.res
	}
	results, err := r.im.svc.Import(ctx, res)
	if err != nil {
		return err
	}
	for i, out := range results {
		it := r.batch[i]
		typ := it.res.Type()
		c := r.report.counts(typ)
		switch {
		case fatal(out.Err):
			return out.Err
		case out.Err != nil:
			r.fail(sources[it.src], it.line, typ, out.Err)
			continue
		case out.Outcome.NoOp:
			c.Unchanged++
		case out.Outcome.Created:
			c.Created++
		default:
			c.Updated++
		}
		r.progress = true
	}
	r.batch = r.batch[:0]
	return nil
}

// setAside reports whether res has conditional references, and remembers
// them for prefetch.
func (r *run) setAside(res *fhir.Resource) bool {
	found := false
	_ = res.RewriteReferences(func(_, ref string) (string, error) {
		if _, _, ok := fhir.ConditionalReference(ref); ok {
			found = true
			if len(r.wanted) < maxWanted {
				r.wanted[ref] = true
			}
		}
		return ref, nil // fn never fails, so neither does the walk
	})
	return found
}

// declaredType is the resourceType a line that failed to parse declares,
// when it is JSON with a known one, so that it is counted with its type.
func declaredType(b []byte) string {
	var v struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(b, &v) != nil || !fhir.IsResourceType(v.ResourceType) {
		return ""
	}
	return v.ResourceType
}
