// Package seed generates a synthetic KAP clinic (team, clients and their
// programs in realistic states) and loads it through kap.Service, so every
// write passes the clinic's rules like a clinician's request would.
package seed

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/mappings"
)

// Options of a generated clinic. The same options give the same clinic
// (names, times, doses, scores); only the ids are new on each load.
type Options struct {
	Clients int
	Seed    uint64
	// Now anchors the timeline: finished programs end before it, planned
	// sessions come after it.
	Now time.Time
	// Rules are the clinic's: preparations, observation times and the
	// post-dose blood pressure are planned to pass them.
	Rules kap.Rules
}

// Stage is how far a client's program has gone at Now.
type Stage string

// The stages, from enrollment to a finished program.
const (
	Assessing   Stage = "assessing"   // intake done, medical assessment planned
	Preparing   Stage = "preparing"   // first preparation done, the next planned
	Ready       Stage = "ready"       // preparations done, first dosing planned
	Dosing      Stage = "dosing"      // part of the dosing series done, the next planned
	Today       Stage = "today"       // a dosing session under way now (not discharged)
	Integrating Stage = "integrating" // series done, one integration done, the next planned
	Finished    Stage = "finished"    // the program is finished
)

// stages is dealt by client index, so that any clinic of a few clients
// already holds finished programs and ones under way.
var stages = []Stage{Finished, Dosing, Finished, Integrating, Ready, Finished, Today, Finished, Preparing, Dosing,
	Finished, Integrating, Finished, Assessing, Dosing, Finished, Integrating, Dosing, Finished, Ready}

// profile is a clinical picture: the program's indications, and whether
// intranasal esketamine (indicated for depression) may be prescribed.
type profile struct {
	indications []mappings.Indication
	esketamine  bool
	anxiety     bool // GAD-7 is followed too
}

var profiles = []profile{
	{indications: []mappings.Indication{{Indication: "mdd-recurrent-severe", TreatmentResistant: true, Role: "chief-complaint"}}, esketamine: true},
	{indications: []mappings.Indication{{Indication: "alcohol-use-disorder", Role: "chief-complaint"}, {Indication: "mdd-recurrent", Role: "comorbidity"}}, anxiety: true},
	{indications: []mappings.Indication{{Indication: "ptsd-chronic", Role: "chief-complaint"}}, anxiety: true},
	{indications: []mappings.Indication{{Indication: "mdd-recurrent", Role: "chief-complaint"}}, esketamine: true},
	{indications: []mappings.Indication{{Indication: "mdd-recurrent-severe", TreatmentResistant: true, Role: "chief-complaint"}, {Indication: "suicidal-ideation", Role: "comorbidity"}}, esketamine: true},
	{indications: []mappings.Indication{{Indication: "chronic-pain-syndrome", Role: "chief-complaint"}, {Indication: "mdd-recurrent", Role: "comorbidity"}}},
	{indications: []mappings.Indication{{Indication: "ptsd", Role: "chief-complaint"}, {Indication: "mdd-recurrent", Role: "comorbidity"}}, anxiety: true},
}

// routes is dealt by client index; intranasal falls back to sublingual
// where esketamine is not indicated.
var routes = []string{"sublingual", "im", "iv", "intranasal", "sublingual", "intranasal", "im", "sublingual", "iv"}

// Clinic is a generated clinic: what Load writes, in order.
type Clinic struct {
	Team    []mappings.TeamMember
	Clients []Client
}

// Client is one client's record and program.
type Client struct {
	Client      mappings.Client
	Escort      mappings.Escort
	Indications []mappings.Indication
	Stage       Stage
	// Therapist, Prescriber and Nurse index Clinic.Team.
	Therapist, Prescriber, Nurse int
	Consents                     []mappings.Consent
	Intentions                   []string
	WeightKg                     string // recorded at the medical assessment
	Rx                           Rx
	PlannedDosing                int
	Sessions                     []Session
	// End is when the program finishes (zero: it goes on).
	End time.Time
}

// Rx is the prescription written at the medical assessment.
type Rx struct {
	Product, Route, StrengthMg string
	Dose                       mappings.Dose
	MaxMg                      string
	Text                       string
	// DoseMg is the mg given in a session (for mg/kg, the calculated mg).
	DoseMg string
}

// Session is a planned session: finished, planned or (dosing) in progress.
type Session struct {
	Kind       string
	Status     string
	Start, End time.Time // End is zero unless finished
	// PHQ9 and GAD7 are taken at the start (pre-dose); nil: not taken.
	PHQ9, GAD7 *Scale
	Dose       *Dose // dosing sessions that started
}

// Scale is a questionnaire's score: the item answers, or the total alone.
type Scale struct {
	Total int
	Items []int // nil: the total alone
}

// Dose is what happens in a dosing session that started.
type Dose struct {
	Mg        string
	At, Until time.Time // Until is zero for a dose given at once
	Pre, Post Vitals    // Post is zero until the client is observed after the dose
	Ready     time.Time // discharge readiness and discharge; zero: not discharged
}

// Vitals are taken together.
type Vitals struct {
	At                            time.Time
	Systolic, Diastolic, HR, SpO2 int
}

// Plan generates the clinic of o.
func Plan(o Options) Clinic {
	c := Clinic{Team: team()}
	for i := range o.Clients {
		c.Clients = append(c.Clients, planClient(i, rand.New(rand.NewPCG(o.Seed, uint64(i))), o))
	}
	return c
}

// The team: three psychotherapists, two prescribers, three nurses.
func team() []mappings.TeamMember {
	roles := []string{"psychotherapist", "psychotherapist", "psychotherapist", "prescriber", "prescriber", "nurse", "nurse", "nurse"}
	out := make([]mappings.TeamMember, len(roles))
	for i, role := range roles {
		out[i] = mappings.TeamMember{
			Name: mappings.Name{Family: family[len(family)-1-i], Given: []string{givenFemale[(i*7)%len(givenFemale)]}},
			Role: role, Identifiers: []mappings.Identifier{{System: staffSystem, Value: fmt.Sprintf("STAFF-%02d", i+1)}},
		}
	}
	return out
}

const (
	mrnSystem   = "https://kapfhir.org/seed/mrn"
	staffSystem = "https://kapfhir.org/seed/staff"
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// between is a uniform integer in [lo, hi].
func between(r *rand.Rand, lo, hi int) int { return lo + r.IntN(hi-lo+1) }

func planClient(i int, r *rand.Rand, o Options) Client {
	prof := profiles[i%len(profiles)]
	c := Client{
		Stage: stages[i%len(stages)], Indications: slices.Clone(prof.indications),
		Therapist: i % 3, Prescriber: 3 + i%2, Nurse: 5 + i%3,
		PlannedDosing: between(r, 3, 6),
	}
	gender, given := "female", givenFemale
	if r.IntN(2) == 0 {
		gender, given = "male", givenMale
	}
	c.Client = mappings.Client{
		Name: mappings.Name{Family: pick(r, family), Given: []string{pick(r, given)}}, Gender: gender,
		BirthDate:   fmt.Sprintf("%04d-%02d-%02d", o.Now.Year()-between(r, 22, 68), between(r, 1, 12), between(r, 1, 28)),
		Identifiers: []mappings.Identifier{{System: mrnSystem, Value: fmt.Sprintf("SEED-%04d", i+1), MRN: true}},
	}
	rel := pick(r, []string{"spouse", "friend", "family-member"})
	escortFamily := c.Client.Name.Family
	if rel == "friend" {
		escortFamily = pick(r, family)
	}
	c.Escort = mappings.Escort{Name: mappings.Name{Family: escortFamily, Given: []string{pick(r, append(slices.Clone(givenFemale), givenMale...))}}, Relationship: rel}
	c.Intentions = []string{pick(r, intentions)}
	if r.IntN(2) == 0 {
		c.Intentions = append(c.Intentions, pick(r, intentions))
	}
	route := routes[i%len(routes)]
	if route == "intranasal" && !prof.esketamine {
		route = "sublingual"
	}
	weight10 := between(r, 520, 1050) // tenths of a kg
	c.WeightKg = tenths(weight10)
	c.Rx = prescription(r, route, weight10)
	c.Sessions = timeline(r, o, c, route, prof)
	intake := c.Sessions[0].Start
	day := intake.Format(time.DateOnly)
	c.Consents = []mappings.Consent{
		{Kind: "treatment", Status: "active", Decision: "permit", DateTime: rfc(intake), Start: day},
		{Kind: "therapeutic-touch", Status: "active", Decision: pick(r, []string{"permit", "permit", "deny"}), DateTime: rfc(intake), Start: day},
	}
	if r.IntN(3) > 0 {
		c.Consents = append(c.Consents, mappings.Consent{Kind: "release-of-information", Status: "active", Decision: "permit", DateTime: rfc(intake), Start: day, Purposes: []string{"treatment"}})
	}
	if c.Stage == Finished {
		c.End = c.Sessions[len(c.Sessions)-1].End.Add(30 * time.Minute)
	}
	return c
}

func tenths(v int) string { return strconv.Itoa(v/10) + "." + strconv.Itoa(v%10) }

func rfc(t time.Time) string { return t.Format(time.RFC3339) }

// prescription orders by route: compounded troches in mg, IM and IV
// ketamine in mg/kg (the service calculates the mg from the weight),
// Spravato in 28 mg devices.
func prescription(r *rand.Rand, route string, weight10 int) Rx {
	switch route {
	case "sublingual":
		mg := 50 * between(r, 2, 5)
		return Rx{Product: "ketamine-troche", StrengthMg: "50", Route: route, Dose: mappings.Dose{Value: num(mg), Unit: "mg"}, MaxMg: strconv.Itoa(mg + 50), DoseMg: strconv.Itoa(mg),
			Text: fmt.Sprintf("%d mg sublingual, hold 15 minutes, then spit", mg)}
	case "intranasal":
		return Rx{Product: "spravato", Route: route, Dose: mappings.Dose{Value: "56", Unit: "mg"}, MaxMg: "84", DoseMg: "56", Text: "56 mg (2 devices), 84 mg from the third session if needed"}
	}
	perKg := 5 * between(r, 10, 15) // hundredths of a mg/kg: 0.50 to 0.75
	product, text := "ketamine-100mg-ml", "intramuscular injection"
	if route == "iv" {
		product, text = "ketamine-10mg-ml", "intravenous infusion over 40 minutes"
	}
	return Rx{Product: product, Route: route, Dose: mappings.Dose{Value: json100(perKg), Unit: "mg/kg"},
		MaxMg: strconv.Itoa((weight10*perKg/100+9)/10 + 10), DoseMg: calculatedMg(weight10, perKg), Text: text}
}

func num(v int) json.Number { return json.Number(strconv.Itoa(v)) }

// dec is a decimal lexeme as the mappings take it.
func dec(s string) json.Number { return json.Number(s) }

// json100 writes hundredths as a decimal: 50 → 0.50.
func json100(v int) json.Number { return json.Number(fmt.Sprintf("%d.%02d", v/100, v%100)) }

// calculatedMg is the service's mg/kg arithmetic (kap-rules.md): kg × mg/kg
// rounded to 0.1 mg half away from zero.
func calculatedMg(weight10, perKg100 int) string { return tenths((weight10*perKg100 + 50) / 100) }
