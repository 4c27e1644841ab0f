package httpapi

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// FuzzBundle runs a batch or transaction body through everything done to
// it before the store: the streaming decoder, the entries' requests, the
// batch checks and the transaction's ops (patches, criteria, If-Match),
// in processing order. It never panics, and every error is a 4xx.
func FuzzBundle(f *testing.F) {
	seeds, err := filepath.Glob("testdata/fuzz-bundles/*.json")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	gin.SetMode(gin.ReleaseMode)
	a := &api{Config: Config{Registry: fhir.NewRegistry(), BaseURL: "http://fhir.test/fhir"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(what string, err error) {
			t.Helper()
			if s := fault.Status(err); err != nil && (s < 400 || s >= 500) {
				t.Fatalf("%s: status %d: %v", what, s, err)
			}
		}
		b, err := fhir.DecodeBundle(bytes.NewReader(body), fhir.BundleOptions{ConditionalReferences: true, MaxEntries: 1000})
		if err != nil {
			check("DecodeBundle", err)
			return
		}
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("POST", "/fhir", nil)
		entries, errs := a.parseEntries(c, b)
		for i, e := range order(entries) {
			err := errs[e.index]
			check("parseEntry", err)
			if err != nil {
				continue
			}
			if entries[e.index] != e {
				t.Fatalf("order lost entry %d", i)
			}
			if e.resource != nil {
				check("noConditionalReferences", noConditionalReferences(e))
			}
			plainWrite(e)
			if e.method != "GET" && e.method != "HEAD" {
				if _, err := a.opOf(e); err != nil {
					check("opOf", locate(err, e.expr))
				}
			}
		}
	})
}
