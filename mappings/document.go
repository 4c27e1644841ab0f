package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"strings"

	"github.com/kapfhir/kapfhir/internal/fault"
)

const (
	sysDocCategory = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
	// XHTML is what Oracle Health accepts on DocumentReference create (§11);
	// Epic takes it too.
	contentXHTML = "application/xhtml+xml"
	contentHTML  = "text/html"
)

// Document is what a rendered document adds to its clinical content: the
// DocumentReference id, who wrote it and when (no clock: given).
type Document struct {
	ID       string `json:"id"`
	AuthorID string `json:"authorId"`
	Date     string `json:"date"`
	// Text is the clinician's own narrative, rendered as the last section.
	Text string `json:"text,omitempty"`
}

func checkDocument(d Document) error {
	return check(
		checkID("id", d.ID, true),
		checkID("authorId", d.AuthorID, true),
		checkDateTime("date", d.Date, true),
	)
}

// within prefixes the expressions of a fault error with the field holding
// the checked value (e.g. administrations[1].), so a nested input is named
// exactly.
func within(prefix string, err error) error {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return err
	}
	for i := range fe.Issues {
		for j, e := range fe.Issues[i].Expression {
			fe.Issues[i].Expression[j] = prefix + e
		}
	}
	return err
}

// xhtml builds a strict XHTML 1.0 document (Oracle validates against it).
// Every text goes through html.EscapeString.
type xhtml struct{ b strings.Builder }

func newXHTML(title string) *xhtml {
	x := &xhtml{}
	x.b.WriteString(`<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">` + "\n")
	x.b.WriteString(`<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">` + "\n")
	fmt.Fprintf(&x.b, "<head><title>%s</title></head>\n<body>\n<h1>%s</h1>\n", html.EscapeString(title), html.EscapeString(title))
	return x
}

func (x *xhtml) heading(h string) { fmt.Fprintf(&x.b, "<h2>%s</h2>\n", html.EscapeString(h)) }

func (x *xhtml) para(text string) { fmt.Fprintf(&x.b, "<p>%s</p>\n", html.EscapeString(text)) }

// fields renders label/value rows; an empty value stays an empty cell, so a
// form shows which fields are unanswered.
func (x *xhtml) fields(rows [][2]string) {
	x.b.WriteString("<table>\n")
	for _, r := range rows {
		fmt.Fprintf(&x.b, "<tr><th>%s</th><td>%s</td></tr>\n", html.EscapeString(r[0]), html.EscapeString(r[1]))
	}
	x.b.WriteString("</table>\n")
}

func (x *xhtml) table(head []string, rows [][]string) {
	x.b.WriteString("<table>\n<tr>")
	for _, h := range head {
		fmt.Fprintf(&x.b, "<th>%s</th>", html.EscapeString(h))
	}
	x.b.WriteString("</tr>\n")
	for _, r := range rows {
		x.b.WriteString("<tr>")
		for _, c := range r {
			fmt.Fprintf(&x.b, "<td>%s</td>", html.EscapeString(c))
		}
		x.b.WriteString("</tr>\n")
	}
	x.b.WriteString("</table>\n")
}

func (x *xhtml) bytes() []byte {
	return []byte(x.b.String() + "</body>\n</html>\n")
}

// docMeta is the clinical context of a DocumentReference.
type docMeta struct {
	typ                 *codeableConcept
	clientID, sessionID string
	period              *period
	docStatus           string
	contentType, title  string
}

// documentReference is a US Core 6.1 DocumentReference (§11 must-support
// elements: status, type, category clinical-note, subject, date, author,
// content.attachment, context.encounter and period).
func (m *Mapper) documentReference(d Document, dm docMeta, body []byte, l Labels) documentReferenceRes {
	return documentReferenceRes{
		base:      base{ResourceType: "DocumentReference", ID: d.ID, Meta: m.meta("us-core-documentreference", l)},
		Status:    "current",
		DocStatus: dm.docStatus,
		Type:      dm.typ,
		Category:  []codeableConcept{{Coding: []Coding{{System: sysDocCategory, Code: "clinical-note", Display: "Clinical Note"}}}},
		Subject:   ref("Patient", dm.clientID),
		Date:      d.Date,
		Author:    []reference{*ref("Practitioner", d.AuthorID)},
		Content: []docContent{{Attachment: attachment{
			ContentType: dm.contentType, Language: "en", Data: body, Title: dm.title, Creation: d.Date,
		}}},
		Context: &docContext{Encounter: []reference{*ref("Encounter", dm.sessionID)}, Period: dm.period},
	}
}

// SessionNoteToFHIR renders a session note as a US Core DocumentReference
// (§11), the form in which EHRs accept KAP sessions (they do not accept
// MedicationAdministration or EpisodeOfCare): type = the note type of the
// session kind, an XHTML attachment with the session, the doses (product,
// route, mg, time), the measurements and, for a discharged dosing session,
// the discharge instructions. The administrations and measurements must
// belong to the session. l is the program's label set.
func (m *Mapper) SessionNoteToFHIR(d Document, s Session, admins []Administration, ms []Measurement, l Labels) ([]Resource, error) {
	if err := checkDocument(d); err != nil {
		return nil, err
	}
	if err := m.checkSession(s); err != nil {
		return nil, within("session.", err)
	}
	for i, a := range admins {
		e := fmt.Sprintf("administrations[%d].", i)
		if err := m.checkAdministration(a); err != nil {
			return nil, within(e, err)
		}
		if a.SessionID != s.ID {
			return nil, invalid(e+"sessionId", "the administration belongs to session %q, not to this session", a.SessionID)
		}
	}
	for i := range ms {
		e := fmt.Sprintf("measurements[%d].", i)
		if err := m.checkMeasurement(&ms[i]); err != nil {
			return nil, within(e, err)
		}
		if ms[i].SessionID != "" && ms[i].SessionID != s.ID {
			return nil, invalid(e+"sessionId", "the measurement belongs to session %q, not to this session", ms[i].SessionID)
		}
	}
	kind := m.t.sessionKind(s.Kind, s.Product)
	noteType := Coding{System: sysLOINC, Code: kind.Note.Code, Display: kind.Note.Display}
	title := m.t.kap(kind.Kap).Display

	x := newXHTML(noteType.Display)
	x.heading("Session")
	x.fields([][2]string{{"Session", title}, {"Status", s.Status}, {"Start", s.Start}, {"End", s.End}})
	if len(admins) > 0 {
		x.heading("Medication administered")
		var rows [][]string
		for _, a := range admins {
			when := a.Time
			if when == "" {
				when = a.Start + " to " + a.End
			}
			rows = append(rows, []string{when, m.productText(a.Product, a.StrengthMg), m.t.route(a.Route).Display, string(a.DoseMg) + " mg", a.LotNumber})
		}
		x.table([]string{"Time", "Product", "Route", "Dose", "Lot"}, rows)
	}
	if len(ms) > 0 {
		x.heading("Measurements")
		var rows [][]string
		for _, mm := range ms {
			name, result := m.measurementText(mm)
			rows = append(rows, []string{mm.Time, name, result})
		}
		x.table([]string{"Time", "Measurement", "Result"}, rows)
	}
	if dis := s.Discharge; dis != nil {
		end, err := addHours(dis.Time, m.noDrivingHours)
		if err != nil {
			return nil, invalid("session.discharge.time", "session.discharge.time: %v", err)
		}
		x.heading("Discharge instructions")
		released := "Discharged at " + dis.Time + "."
		if dis.ReleasedToEscort {
			released = "Discharged at " + dis.Time + ", released to the care of the escort."
		}
		x.para(released)
		x.para(m.noDrivingInstruction(end))
	}
	if d.Text != "" {
		x.heading("Note")
		x.para(d.Text)
	}
	docStatus := "preliminary"
	if s.Status == "finished" {
		docStatus = "final"
	}
	var p *period
	if s.Start != "" || s.End != "" {
		p = &period{Start: s.Start, End: s.End}
	}
	var e emitter
	e.add("DocumentReference", d.ID, m.documentReference(d, docMeta{
		typ: cc(noteType), clientID: s.ClientID, sessionID: s.ID, period: p,
		docStatus: docStatus, contentType: contentXHTML, title: title,
	}, x.bytes(), l))
	return e.result()
}

// productText is the product as a note shows it.
func (m *Mapper) productText(key string, strength json.Number) string {
	p := m.t.product(key)
	if p.Compounded {
		return fmt.Sprintf(p.Text, strength)
	}
	return p.Display
}

// measurementText is the name and the result of a checked measurement.
func (m *Mapper) measurementText(ms Measurement) (name, result string) {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	switch v, in, f := m.t.vital(ms.Kind), m.t.instrument(ms.Kind), m.finding(ms.Kind); {
	case v != nil && len(v.Components) > 0:
		return v.Name, fmt.Sprintf("%s/%s %s", ms.Systolic, ms.Diastolic, v.Unit)
	case v != nil:
		return v.Name, fmt.Sprintf("%s %s", ms.Value, v.Unit)
	case f != nil:
		return m.t.kap(f.Code).Display, yesNo(*ms.Finding)
	case ms.Total != nil && ms.Severity != "":
		return in.Name, fmt.Sprintf("total %d (%s)", *ms.Total, ms.Severity)
	case ms.Total != nil:
		return in.Name, fmt.Sprintf("total %d", *ms.Total)
	default:
		answers := make([]string, len(ms.Items))
		for i, a := range ms.Items {
			answers[i] = fmt.Sprint(a)
		}
		return in.Name, "answers " + strings.Join(answers, ", ")
	}
}
