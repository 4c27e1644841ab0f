package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestStatusAndOutcome(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		want   string
	}{
		{New(Invalid, "Patient.birthDate", "bad date"), 400,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"structure","diagnostics":"bad date","expression":["Patient.birthDate"]}]}`},
		{New(Unprocessable, "Observation.status", "missing").WithCode("required"), 422,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"required","diagnostics":"missing","expression":["Observation.status"]}]}`},
		{&Error{Kind: Unprocessable, Issues: []Issue{{Severity: "error", Code: "business-rule",
			Details:     &CodeableConcept{Coding: []Coding{{System: "https://kapfhir.org/fhir/CodeSystem/kap", Code: "dosing.escort-required"}}},
			Diagnostics: "no escort", Expression: []string{"escort"}}}}, 422,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","details":{"coding":[{"system":"https://kapfhir.org/fhir/CodeSystem/kap","code":"dosing.escort-required"}]},"diagnostics":"no escort","expression":["escort"]}]}`},
		{fmt.Errorf("context: %w", New(Gone, "", "deleted")), 410,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"deleted","diagnostics":"deleted"}]}`},
		// A plain error is internal; its text never reaches the client.
		{errors.New("connection refused to 10.0.0.1"), 500,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"request failed"}]}`},
	} {
		if got := Status(tc.err); got != tc.status {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.status)
		}
		if got := string(Outcome(tc.err)); got != tc.want {
			t.Errorf("Outcome(%v) =\n%s\nwant\n%s", tc.err, got, tc.want)
		}
	}
}

func TestEveryKindHasStatusAndCode(t *testing.T) {
	for k := Internal; k <= URITooLong; k++ {
		if status[k] == 0 || issueCode[k] == "" {
			t.Errorf("kind %d has status %d, code %q", k, status[k], issueCode[k])
		}
	}
}
