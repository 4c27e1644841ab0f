package mappings

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/golden"
)

func TestCodeSystem(t *testing.T) {
	m := newMapper(t)
	cs, err := m.CodeSystem("kap")
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, []Resource{cs})
	golden.Check(t, "testdata/codesystem.golden", render([]Resource{cs}))
}

// TestKapCodesInCodeSystem: every kap code a table or the code emits is a
// concept of the served CodeSystem, and every golden output's kap codings
// are too.
func TestKapCodesInCodeSystem(t *testing.T) {
	m := newMapper(t)
	cs, err := m.CodeSystem("kap")
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Concept []csConcept `json:"concept"`
	}
	if err := json.Unmarshal(cs.JSON, &parsed); err != nil {
		t.Fatal(err)
	}
	defined := map[string]string{}
	for _, c := range parsed.Concept {
		if _, dup := defined[c.Code]; dup {
			t.Errorf("concept %s defined twice", c.Code)
		}
		defined[c.Code] = c.Display
	}
	for _, code := range m.t.kapCodesUsed() {
		if _, ok := defined[code]; !ok {
			t.Errorf("table code kap#%s is not in the CodeSystem", code)
		}
	}
	// The emitted codings, with their displays.
	files, _ := filepath.Glob("testdata/kap/*.fhir.golden")
	documents, _ := filepath.Glob("testdata/rems/*.golden")
	files = append(files, documents...)
	re := regexp.MustCompile(`"system": "` + regexp.QuoteMeta(m.KapSystem()) + `",\s*"code": "([^"]+)",\s*"display": "([^"]+)"`)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, match := range re.FindAllStringSubmatch(string(b), -1) {
			seen++
			if d, ok := defined[match[1]]; !ok || d != match[2] {
				t.Errorf("emitted kap#%s %q: CodeSystem has %q (defined %v)", match[1], match[2], d, ok)
			}
		}
	}
	if seen == 0 {
		t.Error("no kap codings found in the golden outputs")
	}
}

func intp(n int) *int { return &n }

// TestScoring: the scoring rules against hand-computed examples.
func TestScoring(t *testing.T) {
	m := newMapper(t)
	for _, tc := range []struct {
		instrument string
		items      []int
		want       Score
		scored     bool
	}{
		{"phq9", []int{3, 3, 3, 3, 3, 3, 3, 3, 3}, Score{27, "severe"}, true},
		{"phq9", []int{0, 0, 0, 0, 0, 0, 0, 0, 0}, Score{0, "minimal"}, true},
		{"phq9", []int{1, 1, 1, 1, 0, 0, 0, 0, 0}, Score{4, "minimal"}, true},
		{"phq9", []int{1, 1, 1, 1, 1, 0, 0, 0, 0}, Score{5, "mild"}, true},
		{"phq9", []int{2, 2, 2, 1, 1, 1, 0, 0, 0}, Score{9, "mild"}, true},
		{"phq9", []int{2, 2, 2, 2, 2, 0, 0, 0, 0}, Score{10, "moderate"}, true},
		{"phq9", []int{2, 2, 2, 2, 2, 2, 2, 0, 0}, Score{14, "moderate"}, true},
		{"phq9", []int{3, 3, 3, 3, 3, 0, 0, 0, 0}, Score{15, "moderately-severe"}, true},
		{"phq9", []int{3, 3, 3, 3, 3, 2, 2, 0, 0}, Score{19, "moderately-severe"}, true},
		{"phq9", []int{3, 3, 3, 3, 3, 3, 2, 0, 0}, Score{20, "severe"}, true},
		{"gad7", []int{3, 3, 3, 3, 3, 3, 3}, Score{Total: 21}, true},
		{"gad7", []int{1, 0, 2, 0, 1, 0, 1}, Score{Total: 5}, true},
		{"pcl5", []int{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}, Score{Total: 80}, true},
		{"pcl5", []int{1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0}, Score{Total: 40}, true},
		{"cssrs", []int{1, 0, 0, 0, 0, 0, 0}, Score{}, false},
	} {
		got, scored, err := m.ScoreItems(tc.instrument, tc.items)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.instrument, tc.items, err)
		}
		if scored != tc.scored || got != tc.want {
			t.Errorf("%s %v = %+v (scored %v), want %+v (scored %v)", tc.instrument, tc.items, got, scored, tc.want, tc.scored)
		}
	}
}

// TestInvalid: invalid KAP input is a fault.Invalid error whose expression
// names the JSON field.
func TestInvalid(t *testing.T) {
	m := newMapper(t)
	client := func(f func(*Client)) func() error {
		c := Client{ID: "c1", Name: Name{Family: "F"}, Gender: "female", Identifiers: []Identifier{{System: "s", Value: "v"}}}
		f(&c)
		return func() error { _, err := m.ClientToFHIR(c); return err }
	}
	program := func(f func(*Program)) func() error {
		p := Program{ID: "p1", ClientID: "c1", Status: "active", Start: "2026-01-05", Indications: []Indication{{ID: "i1", Indication: "ptsd"}}}
		f(&p)
		return func() error { _, err := m.ProgramToFHIR(p); return err }
	}
	session := func(f func(*Session)) func() error {
		s := Session{ID: "s1", ProgramID: "p1", ClientID: "c1", Kind: "dosing", Product: "ketamine", Status: "finished"}
		f(&s)
		return func() error { _, err := m.SessionToFHIR(s, Labels{}); return err }
	}
	prescription := func(f func(*Prescription)) func() error {
		p := Prescription{ID: "rx", ClientID: "c1", ProgramID: "p1", Product: "ketamine", Route: "im", Dose: Dose{Value: "50", Unit: "mg"},
			Status: "active", PrescriberID: "t2", AuthoredOn: "2026-01-12T11:00:00Z"}
		f(&p)
		return func() error { _, err := m.PrescriptionToFHIR(p, Labels{}); return err }
	}
	administration := func(f func(*Administration)) func() error {
		a := Administration{ID: "a", ClientID: "c1", SessionID: "s5", Product: "ketamine", Route: "im", DoseMg: "50",
			Time: "2026-02-02T09:15:00Z", PerformerID: "t2", Status: "completed"}
		f(&a)
		return func() error { _, err := m.AdministrationToFHIR(a, Labels{}); return err }
	}
	measurement := func(f func(*Measurement)) func() error {
		ms := Measurement{ID: "m", ClientID: "c1", Kind: "phq9", Time: "2026-01-05T10:30:00Z", Items: []int{0, 1, 2, 3, 0, 1, 2, 3, 0}}
		f(&ms)
		return func() error { _, err := m.MeasurementToFHIR(ms, Labels{}); return err }
	}
	consent := func(f func(*Consent)) func() error {
		c := Consent{ID: "k", ClientID: "c1", Kind: "treatment", Status: "active", Decision: "permit", DateTime: "2026-01-05T10:45:00Z"}
		f(&c)
		return func() error { _, err := m.ConsentToFHIR(c, Labels{}); return err }
	}
	for _, tc := range []struct {
		name string
		run  func() error
		expr string
	}{
		{"client without id", client(func(c *Client) { c.ID = "" }), "id"},
		{"client bad id", client(func(c *Client) { c.ID = "a/b" }), "id"},
		{"client gender", client(func(c *Client) { c.Gender = "f" }), "gender"},
		{"client family", client(func(c *Client) { c.Name.Family = "" }), "name.family"},
		{"client identifier value", client(func(c *Client) { c.Identifiers[0].Value = "" }), "identifiers[0].value"},
		{"client birth date", client(func(c *Client) { c.BirthDate = "12/07/1984" }), "birthDate"},
		{"program status", program(func(p *Program) { p.Status = "open" }), "status"},
		{"program unknown indication", program(func(p *Program) { p.Indications[0].Indication = "flu" }), "indications[0].indication"},
		{"program TRD on PTSD", program(func(p *Program) { p.Indications[0].TreatmentResistant = true }), "indications[0].treatmentResistant"},
		{"program team role", program(func(p *Program) { p.Team = []ProgramMember{{MemberID: "t1", Role: "shaman"}} }), "team[0].role"},
		{"program history", program(func(p *Program) { p.StatusHistory = []StatusChange{{Status: "active"}} }), "statusHistory[0].start"},
		{"session kind", session(func(s *Session) { s.Kind = "massage" }), "kind"},
		{"dosing without product", session(func(s *Session) { s.Product = "" }), "product"},
		{"product on intake", session(func(s *Session) { s.Kind = "intake" }), "product"},
		{"session time", session(func(s *Session) { s.Start = "2026-02-02 09:00" }), "start"},
		{"participant role", session(func(s *Session) { s.Participants = []SessionParticipant{{MemberID: "t1", Role: "guide"}} }), "participants[0].role"},
		{"discharge of intake", session(func(s *Session) {
			s.Kind, s.Product, s.Discharge = "intake", "", &Discharge{Time: "2026-02-02T12:00:00Z"}
		}), "discharge"},
		{"release without escort", session(func(s *Session) { s.Discharge = &Discharge{Time: "2026-02-02T12:00:00Z", ReleasedToEscort: true} }), "escortId"},
		{"instruction end disagrees", session(func(s *Session) {
			s.EscortID, s.Discharge = "e1", &Discharge{Time: "2026-02-02T12:00:00Z", InstructionEnd: "2026-02-02T18:00:00Z"}
		}), "discharge.instructionEnd"},
		{"prescription product", prescription(func(p *Prescription) { p.Product = "lsd" }), "product"},
		{"prescription route", prescription(func(p *Prescription) { p.Route = "rectal" }), "route"},
		{"dose unit", prescription(func(p *Prescription) { p.Dose.Unit = "g" }), "dose.unit"},
		{"dose value", prescription(func(p *Prescription) { p.Dose.Value = "1e3" }), "dose.value"},
		{"weight without calculated mg", prescription(func(p *Prescription) { p.Dose = Dose{Value: "0.5", Unit: "mg/kg"}; p.WeightObservationID = "w" }), "calculatedMg"},
		{"calculated mg without weight", prescription(func(p *Prescription) { p.Dose = Dose{Value: "0.5", Unit: "mg/kg"}; p.CalculatedMg = "35" }), "weightObservationId"},
		{"calculation of an mg dose", prescription(func(p *Prescription) { p.CalculatedMg, p.WeightObservationID = "35", "w" }), "calculatedMg"},
		{"troche without strength", prescription(func(p *Prescription) { p.Product = "ketamine-troche" }), "strengthMg"},
		{"prescription without prescriber", prescription(func(p *Prescription) { p.PrescriberID = "" }), "prescriberId"},
		{"dose mg", administration(func(a *Administration) { a.DoseMg = "-5" }), "doseMg"},
		{"administration without time", administration(func(a *Administration) { a.Time = "" }), "time"},
		{"ketamine self-administered", administration(func(a *Administration) { a.SelfAdministered = true; a.PerformerID = "" }), "selfAdministered"},
		{"administration without performer", administration(func(a *Administration) { a.PerformerID = "" }), "performerId"},
		{"measurement kind", measurement(func(ms *Measurement) { ms.Kind = "mood" }), "kind"},
		{"item out of range", measurement(func(ms *Measurement) { ms.Items[3] = 4 }), "items[3]"},
		{"item count", measurement(func(ms *Measurement) { ms.Items = ms.Items[:8] }), "items"},
		{"total disagrees", measurement(func(ms *Measurement) { ms.Total = intp(11) }), "total"},
		{"severity disagrees", measurement(func(ms *Measurement) { ms.Severity = "severe" }), "severity"},
		{"bp without diastolic", measurement(func(ms *Measurement) { ms.Kind, ms.Items, ms.Systolic = "bp", nil, "120" }), "diastolic"},
		{"value on bp", measurement(func(ms *Measurement) {
			ms.Kind, ms.Items, ms.Systolic, ms.Diastolic, ms.Value = "bp", nil, "120", "80", "1"
		}), "value"},
		{"weight lexeme", measurement(func(ms *Measurement) { ms.Kind, ms.Items, ms.Value = "weight", nil, "70,5" }), "value"},
		{"local score range", measurement(func(ms *Measurement) { ms.Kind, ms.Items, ms.Total = "moaas", nil, intp(6) }), "total"},
		{"bprs below the 18-item minimum", measurement(func(ms *Measurement) { ms.Kind, ms.Items, ms.Total = "bprs", nil, intp(10) }), "total"},
		{"bprs items", measurement(func(ms *Measurement) { ms.Kind, ms.Total = "bprs", intp(40) }), "items"},
		{"finding missing", measurement(func(ms *Measurement) { ms.Kind, ms.Items = "discharge-ready", nil }), "finding"},
		{"cssrs answer", measurement(func(ms *Measurement) { ms.Kind, ms.Items = "cssrs", []int{0, 2, 0, 0, 0, 0, 0} }), "items[1]"},
		{"consent kind", consent(func(c *Consent) { c.Kind = "research" }), "kind"},
		{"consent decision", consent(func(c *Consent) { c.Decision = "maybe" }), "decision"},
		{"recipient on treatment consent", consent(func(c *Consent) { c.RecipientID = "org" }), "recipientId"},
		{"purpose", consent(func(c *Consent) { c.Kind, c.Purposes = "release-of-information", []string{"marketing"} }), "purposes[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			var fe *fault.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a fault.Error", err)
			}
			if fe.Kind != fault.Invalid {
				t.Errorf("kind %v, want Invalid", fe.Kind)
			}
			if diff := cmp.Diff([]string{tc.expr}, fe.Issues[0].Expression); diff != "" {
				t.Errorf("expression (-want +got): %s (%v)", diff, err)
			}
		})
	}
}

// TestLabels: R and PSY always; SUD and 42CFRPart2 with an F10-F19
// indication, on the program and on the SUD Condition only.
func TestLabels(t *testing.T) {
	m := newMapper(t)
	codes := func(l Labels) string {
		var out []string
		for _, c := range m.SecurityLabels(l) {
			out = append(out, c.Code)
		}
		return strings.Join(out, ",")
	}
	if got := codes(Labels{}); got != "R,PSY" {
		t.Errorf("labels = %s", got)
	}
	if got := codes(Labels{SubstanceUse: true}); got != "R,PSY,SUD,42CFRPart2" {
		t.Errorf("SUD labels = %s", got)
	}
	for key, sud := range map[string]bool{"alcohol-use-disorder": true, "opioid-use-disorder": true, "ptsd": false, "mdd-recurrent-severe": false, "suicidal-ideation": false} {
		if got := m.ProgramLabels(Program{Indications: []Indication{{Indication: key}}}).SubstanceUse; got != sud {
			t.Errorf("%s: SubstanceUse = %v", key, got)
		}
	}
}
