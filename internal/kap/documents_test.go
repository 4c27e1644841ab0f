package kap

import (
	"testing"

	"github.com/kapfhir/kapfhir/mappings"
)

// TestSigner: a session's documents are signed by the clinician given,
// else the session's participants, else the program's care manager or
// team, so a session recorded without participants still gets its note.
func TestSigner(t *testing.T) {
	team := mappings.Program{Team: []mappings.ProgramMember{{MemberID: "rx", Role: "prescriber"}, {MemberID: "psy", Role: "psychotherapist"}}}
	managed := team
	managed.CareManagerID = "cm"
	withLead := mappings.Session{Participants: []mappings.SessionParticipant{{MemberID: "nurse", Role: "secondary"}, {MemberID: "lead", Role: "lead"}}}
	withOne := mappings.Session{Participants: []mappings.SessionParticipant{{MemberID: "nurse", Role: "secondary"}}}
	for _, c := range []struct {
		name    string
		given   string
		session mappings.Session
		program mappings.Program
		want    string
	}{
		{"given", "performer", withLead, managed, "performer"},
		{"lead participant", "", withLead, managed, "lead"},
		{"first participant", "", withOne, managed, "nurse"},
		{"care manager", "", mappings.Session{}, managed, "cm"},
		{"psychotherapist", "", mappings.Session{}, team, "psy"},
		{"first team member", "", mappings.Session{}, mappings.Program{Team: team.Team[:1]}, "rx"},
		{"nobody", "", mappings.Session{}, mappings.Program{}, ""},
	} {
		if got := signer(c.given, c.session, c.program); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
