package mappings

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/golden"
)

// sessionInput is a dosing session in clinic terms, mapped to FHIR through
// the package's own XxxToFHIR, as the KAP API stores it.
type sessionInput struct {
	Client          *Client          `json:"client"`
	Team            []TeamMember     `json:"team"`
	Session         Session          `json:"session"`
	Administrations []Administration `json:"administrations"`
	Measurements    []Measurement    `json:"measurements"`
	Answers         REMSAnswers      `json:"answers"`
	Document        Document         `json:"document"`
}

func (in sessionInput) resources(t *testing.T, m *Mapper) []Resource {
	t.Helper()
	var rs []Resource
	add := func(out []Resource, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, out...)
	}
	add(m.SessionToFHIR(in.Session, Labels{}))
	if in.Client != nil {
		add(m.ClientToFHIR(*in.Client))
	}
	for _, tm := range in.Team {
		add(m.TeamMemberToFHIR(tm))
	}
	for _, a := range in.Administrations {
		add(m.AdministrationToFHIR(a, Labels{}))
	}
	for _, ms := range in.Measurements {
		add(m.MeasurementToFHIR(ms, Labels{}))
	}
	return rs
}

func readInput(t *testing.T, file string) sessionInput {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var in sessionInput
	if err := strictDecode(b, &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// attachmentOf decodes the attachment of a DocumentReference and checks that
// it is well-formed XHTML.
func attachmentOf(t *testing.T, r Resource) (contentType string, body []byte) {
	t.Helper()
	var doc documentReferenceRes
	if err := json.Unmarshal(r.JSON, &doc); err != nil || len(doc.Content) != 1 {
		t.Fatalf("%s: content %v", r.Ref(), err)
	}
	body = doc.Content[0].Attachment.Data
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: the attachment is not well-formed XHTML: %v", r.Ref(), err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Space + " " + se.Name.Local
		}
	}
	if root != "http://www.w3.org/1999/xhtml html" {
		t.Errorf("%s: root element %q, want XHTML html", r.Ref(), root)
	}
	return doc.Content[0].Attachment.ContentType, body
}

func renderJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// TestREMSGolden: an esketamine session's resources give the REMS form
// (rems/*.form.golden); with the clinician's answers, the form maps to the
// REMS Observations (*.fhir.golden) and the submission DocumentReference
// (*.document.golden, its XHTML in *.xhtml.golden), all valid; the session's
// resources plus the Observations read back to the same form.
func TestREMSGolden(t *testing.T) {
	m := newMapper(t)
	files, _ := filepath.Glob("testdata/rems/*.json")
	if len(files) == 0 {
		t.Fatal("no REMS inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			base := strings.TrimSuffix(f, ".json")
			in := readInput(t, f)
			session := in.resources(t, m)
			form, ok := m.REMSFromFHIR(session)
			if !ok {
				t.Fatal("the esketamine session does not give a REMS form")
			}
			form.REMSAnswers = in.Answers
			golden.Check(t, base+".form.golden", renderJSON(t, form))

			obs, err := m.REMSToFHIR(form, Labels{})
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, base+".fhir.golden", render(obs))
			checkValid(t, obs)
			back, ok := m.REMSFromFHIR(append(session, obs...))
			if !ok {
				t.Fatal("the session with its REMS Observations does not read back")
			}
			if diff := cmp.Diff(form, back); diff != "" {
				t.Errorf("form → FHIR → form differs (-form +read):\n%s", diff)
			}

			doc, err := m.REMSDocumentToFHIR(in.Document, form, Labels{})
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, base+".document.golden", render(doc))
			checkValid(t, doc)
			ct, body := attachmentOf(t, doc[0])
			if ct != "text/html" {
				t.Errorf("contentType %q", ct)
			}
			golden.Check(t, base+".xhtml.golden", string(body))
		})
	}
}

// TestSessionNoteGolden: notes/*.json (document, session, administrations,
// measurements) render to a valid US Core DocumentReference
// (*.fhir.golden) with an XHTML attachment (*.xhtml.golden).
func TestSessionNoteGolden(t *testing.T) {
	m := newMapper(t)
	files, _ := filepath.Glob("testdata/notes/*.json")
	if len(files) == 0 {
		t.Fatal("no note inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			base := strings.TrimSuffix(f, ".json")
			in := readInput(t, f)
			rs, err := m.SessionNoteToFHIR(in.Document, in.Session, in.Administrations, in.Measurements, Labels{})
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, base+".fhir.golden", render(rs))
			checkValid(t, rs)
			ct, body := attachmentOf(t, rs[0])
			if ct != contentXHTML {
				t.Errorf("contentType %q", ct)
			}
			golden.Check(t, base+".xhtml.golden", string(body))
			if d := in.Session.Discharge; d != nil && !bytes.Contains(body, []byte("Do not drive, operate machinery or work until")) {
				t.Error("the note of a discharged session lacks the discharge instruction")
			}
		})
	}
}

// TestREMSFromFHIREdges varies the golden session: which blood pressures
// fill the three time points, the readiness minutes when monitoring ended
// before 2 h, the dose checkbox and device count, and sessions that give no
// form.
func TestREMSFromFHIREdges(t *testing.T) {
	m := newMapper(t)
	at := func(hm string) string { return "2026-03-03T" + hm + ":00Z" }
	bp := func(id, hm, sys, dia string) Measurement {
		return Measurement{ID: id, ClientID: "c2", SessionID: "s9", Kind: "bp", Time: at(hm), Systolic: json.Number(sys), Diastolic: json.Number(dia)}
	}
	ready := Measurement{ID: "r", ClientID: "c2", SessionID: "s9", Kind: "discharge-ready", Time: at("14:40"), Finding: ptr(true)}
	type want struct {
		prior, bp40, completion string // times, "" = empty field
		minutes                 *int
		readiness               *int
		dose                    string
		devices                 int
	}
	for _, tc := range []struct {
		name   string
		change func(*sessionInput)
		want   want
		fits   bool
	}{
		{"golden session", func(*sessionInput) {}, want{at("12:55"), at("13:45"), at("15:05"), ptr(130), nil, "56", 2}, true},
		{"no 40-min BP", func(in *sessionInput) {
			in.Measurements = []Measurement{bp("b1", "12:55", "130", "80"), bp("b2", "14:15", "135", "85"), bp("b3", "15:00", "125", "80")}
		}, want{at("12:55"), "", at("15:00"), ptr(130), nil, "56", 2}, true},
		{"BP closest to 40 min wins", func(in *sessionInput) {
			in.Measurements = []Measurement{bp("b1", "13:00", "130", "80"), bp("b2", "13:35", "140", "90"), bp("b3", "13:47", "145", "92"), bp("b4", "14:50", "125", "80")}
		}, want{at("13:00"), at("13:47"), at("14:50"), ptr(130), nil, "56", 2}, true},
		{"no BP after the 40-min one", func(in *sessionInput) {
			in.Measurements = []Measurement{bp("b1", "12:55", "130", "80"), bp("b2", "13:45", "140", "90"), bp("b3", "15:30", "120", "80")}
		}, want{at("12:55"), at("13:45"), "", ptr(130), nil, "56", 2}, true},
		{"discharge before 2 h: readiness from the discharge-ready finding", func(in *sessionInput) {
			in.Session.Discharge.Time, in.Session.End = at("14:50"), at("14:55")
			in.Measurements = []Measurement{bp("b1", "12:55", "130", "80"), bp("b2", "13:45", "140", "90"), bp("b3", "14:45", "125", "80"), ready}
		}, want{at("12:55"), at("13:45"), at("14:45"), ptr(105), ptr(95), "56", 2}, true},
		{"discharge before 2 h without a finding: readiness at discharge", func(in *sessionInput) {
			in.Session.Discharge.Time, in.Session.End = at("14:50"), at("14:55")
			in.Measurements = nil
		}, want{"", "", "", ptr(105), ptr(105), "56", 2}, true},
		{"84 mg in three devices", func(in *sessionInput) {
			third := in.Administrations[1]
			third.ID, third.Time = "a23", at("13:15")
			in.Administrations = append(in.Administrations, third)
		}, want{at("12:55"), at("13:45"), at("15:05"), ptr(130), nil, "84", 3}, true},
		{"other dose, not whole devices", func(in *sessionInput) {
			in.Administrations[1].DoseMg = "20"
		}, want{at("12:55"), at("13:45"), at("15:05"), ptr(130), nil, "other", 0}, true},
		{"a not-done device is not counted", func(in *sessionInput) {
			in.Administrations[1].Status = "not-done"
		}, want{at("12:55"), at("13:45"), at("15:05"), ptr(130), nil, "other", 1}, true},
		{"ketamine session", func(in *sessionInput) { in.Session.Product = "ketamine" }, want{}, false},
		{"preparation session", func(in *sessionInput) {
			in.Session.Kind, in.Session.Product, in.Session.Discharge, in.Administrations = "preparation", "", nil, nil
		}, want{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := readInput(t, "testdata/rems/esketamine-56mg.json")
			tc.change(&in)
			f, ok := m.REMSFromFHIR(in.resources(t, m))
			if ok != tc.fits {
				t.Fatalf("fits = %v, want %v", ok, tc.fits)
			}
			if !ok {
				return
			}
			timeOf := func(b *REMSBP) string {
				if b == nil {
					return ""
				}
				return b.Time
			}
			got := want{timeOf(f.BPPrior), timeOf(f.BP40Min), timeOf(f.BPCompletion), f.MonitoringMinutes, f.MinutesToReadiness, f.Dose, f.Devices}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestREMSFromForeign: a setting given as Encounter.serviceProvider is read
// from the Organization of the group.
func TestREMSFromForeign(t *testing.T) {
	m := newMapper(t)
	in := readInput(t, "testdata/rems/esketamine-56mg.json")
	rs := in.resources(t, m)
	var enc map[string]any
	if err := json.Unmarshal(rs[0].JSON, &enc); err != nil {
		t.Fatal(err)
	}
	enc["serviceProvider"] = map[string]any{"reference": "Organization/org1"}
	rs[0].JSON, _ = json.Marshal(enc)
	rs = append(rs, Resource{Type: "Organization", ID: "org1", JSON: json.RawMessage(
		`{"resourceType":"Organization","id":"org1","name":"Riverside KAP Clinic","address":[{"line":["12 Main St","Suite 4"],"city":"Springfield","state":"IL","postalCode":"62701"}]}`)})
	f, ok := m.REMSFromFHIR(rs)
	if !ok {
		t.Fatal("does not fit")
	}
	want := &REMSSetting{ID: "org1", Name: "Riverside KAP Clinic", Address: "12 Main St, Suite 4, Springfield, IL 62701"}
	if diff := cmp.Diff(want, f.Setting); diff != "" {
		t.Errorf("setting (-want +got):\n%s", diff)
	}
}

// TestDocumentsInvalid: invalid input names its field, nested ones with
// their prefix.
func TestDocumentsInvalid(t *testing.T) {
	m := newMapper(t)
	rems := func(change func(*REMSForm, *Document)) func() error {
		in := readInput(t, "testdata/rems/esketamine-56mg.json")
		f, ok := m.REMSFromFHIR(in.resources(t, m))
		if !ok {
			t.Fatal("does not fit")
		}
		f.REMSAnswers = in.Answers
		d := in.Document
		change(&f, &d)
		return func() error {
			if _, err := m.REMSToFHIR(f, Labels{}); err != nil {
				return err
			}
			_, err := m.REMSDocumentToFHIR(d, f, Labels{})
			return err
		}
	}
	note := func(change func(*sessionInput)) func() error {
		in := readInput(t, "testdata/notes/dosing-sublingual.json")
		change(&in)
		return func() error {
			_, err := m.SessionNoteToFHIR(in.Document, in.Session, in.Administrations, in.Measurements, Labels{})
			return err
		}
	}
	for _, tc := range []struct {
		name string
		run  func() error
		expr string
	}{
		{"rems concomitant class", rems(func(f *REMSForm, _ *Document) { f.Concomitant["opioids"] = true }), "concomitant.opioids"},
		{"rems event", rems(func(f *REMSForm, _ *Document) { f.Experienced = map[string]bool{"nausea": true} }), "experienced.nausea"},
		{"rems without end of monitoring", rems(func(f *REMSForm, _ *Document) { f.MonitoringEnd = "" }), "monitoringEnd"},
		{"rems vitals time", rems(func(f *REMSForm, _ *Document) { f.VitalsBefore.Time = "12:56" }), "vitalsAcceptableBeforeAdministration.time"},
		{"rems negative minutes", rems(func(f *REMSForm, _ *Document) { f.MinutesToReadiness = ptr(-3) }), "minutesToReadiness"},
		{"rems document without author", rems(func(_ *REMSForm, d *Document) { d.AuthorID = "" }), "authorId"},
		{"note date", note(func(in *sessionInput) { in.Document.Date = "2026-02-02" }), "date"},
		{"note session kind", note(func(in *sessionInput) { in.Session.Kind = "massage" }), "session.kind"},
		{"note administration dose", note(func(in *sessionInput) { in.Administrations[0].DoseMg = "lots" }), "administrations[0].doseMg"},
		{"note administration of another session", note(func(in *sessionInput) { in.Administrations[0].SessionID = "s6" }), "administrations[0].sessionId"},
		{"note measurement", note(func(in *sessionInput) { in.Measurements[2].Total = ptr(93) }), "measurements[2].total"},
		{"note measurement of another session", note(func(in *sessionInput) { in.Measurements[0].SessionID = "s6" }), "measurements[0].sessionId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid {
				t.Fatalf("error %v is not a fault.Invalid", err)
			}
			if diff := cmp.Diff([]string{tc.expr}, fe.Issues[0].Expression); diff != "" {
				t.Errorf("expression (-want +got): %s (%v)", diff, err)
			}
		})
	}
}
