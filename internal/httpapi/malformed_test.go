package httpapi_test

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// TestMalformedInputNeverFails sends corrupted versions of a real resource
// and hostile bodies: every answer is a 2xx or a 4xx (do fails on 5xx) and
// the server keeps serving.
func TestMalformedInputNeverFails(t *testing.T) {
	e := newEnv(t)
	seed, err := os.ReadFile("../../testdata/r4-examples/Observation-example-genetics-1.json")
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{
		"", "null", "[]", "{}", `""`, "1e999", `{"resourceType":null}`, `{"resourceType":"Observation"}`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":99999999999}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"$where":"1"}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"id":{"$gt":""}}`,
		"{\"resourceType\":\"Observation\",\"status\":\"final\xff\"}",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 150; i++ {
		b := []byte(string(seed))
		switch i % 3 {
		case 0: // truncate
			b = b[:rng.IntN(len(b))]
		case 1: // overwrite a byte with JSON punctuation
			b[rng.IntN(len(b))] = `{}[]:,"\0`[rng.IntN(9)]
		case 2: // swap two bytes
			x, y := rng.IntN(len(b)), rng.IntN(len(b))
			b[x], b[y] = b[y], b[x]
		}
		bodies = append(bodies, string(b))
	}
	for _, body := range bodies {
		e.do("POST", "/fhir/Observation", body)
		e.do("PUT", "/fhir/Observation/x1", body)
	}
	if r := e.get("/healthz"); r.status != 200 {
		t.Fatalf("server unhealthy after malformed input: %d", r.status)
	}
}
