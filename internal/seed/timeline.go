package seed

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/kapfhir/kapfhir/internal/kap"
)

// step is a session of the whole program before it is placed in time:
// its kind, its day from the intake and its time of day.
type step struct {
	kind string
	day  int
	at   time.Duration
}

var (
	lengths     = map[string]time.Duration{"intake": 60 * time.Minute, "medical-assessment": 45 * time.Minute, "preparation": 50 * time.Minute, "integration": 50 * time.Minute}
	slots       = []time.Duration{9 * time.Hour, 10*time.Hour + 30*time.Minute, 13 * time.Hour, 14*time.Hour + 30*time.Minute, 16 * time.Hour}
	dosingSlots = []time.Duration{9 * time.Hour, 13 * time.Hour}
	kapRoutes   = map[string]kap.Route{"iv": kap.Intravenous, "im": kap.Intramuscular, "sublingual": kap.Sublingual, "intranasal": kap.Intranasal}
)

// response is how a client's PHQ-9 total moves over the dosing series.
type response int

const (
	remitter response = iota
	responder
	partial
	nonResponder
)

// timeline plans the client's sessions: the whole program is laid out from
// the intake, cut where the stage says it stands at Now, and placed so that
// what is done lies before Now and the next session after it.
func timeline(r *rand.Rand, o Options, c Client, route string, prof profile) []Session {
	preps := max(o.Rules.MinPreparationSessions, 2) + r.IntN(2)
	integrations := 1 + r.IntN(2)
	if c.Stage == Integrating {
		integrations = 2
	}
	n := c.PlannedDosing
	var steps []step
	day := 0
	add := func(kind string, gap int) {
		day += gap
		at := pick(r, slots)
		if kind == "dosing" {
			at = pick(r, dosingSlots)
		}
		steps = append(steps, step{kind, day, at})
	}
	add("intake", 0)
	add("medical-assessment", between(r, 2, 5))
	for range preps {
		add("preparation", between(r, 3, 5))
	}
	for k := range n {
		switch {
		case k == 0:
			add("dosing", between(r, 4, 7))
		case route == "intranasal": // esketamine: twice a week
			add("dosing", between(r, 3, 4))
		default:
			add("dosing", between(r, 6, 8))
		}
	}
	for k := range integrations {
		if k == 0 {
			add("integration", between(r, 2, 4))
		} else {
			add("integration", between(r, 7, 14))
		}
	}

	base := 2 + preps // intake, assessment and the preparations
	done := map[Stage]int{Assessing: 1, Preparing: 3, Ready: base, Integrating: base + n + 1, Finished: len(steps)}[c.Stage]
	switch c.Stage {
	case Dosing:
		done = base + between(r, 1, n-1)
	case Today:
		done = base + r.IntN(n)
	}
	if done < len(steps) {
		steps = steps[:done+1]
	}

	// ref is the step day that falls on today.
	today := time.Date(o.Now.Year(), o.Now.Month(), o.Now.Day(), 0, 0, 0, 0, o.Now.Location())
	var ref int
	switch {
	case c.Stage == Today:
		ref = steps[done].day
	case done < len(steps): // the last done session 1 day or more ago, the next one to come
		ref = steps[done-1].day + between(r, 1, steps[done].day-steps[done-1].day-1)
	default:
		ref = steps[done-1].day + between(r, 2, 90)
	}

	class := response(0)
	switch x := r.IntN(100); {
	case x < 35:
		class = remitter
	case x < 65:
		class = responder
	case x < 85:
		class = partial
	default:
		class = nonResponder
	}
	phq := newScale(r, 9, between(r, 12, 24), class)
	if prof.esketamine {
		phq = newScale(r, 9, between(r, 16, 24), class)
	}
	var gad *scale
	if prof.anxiety || r.IntN(3) == 0 {
		gad = newScale(r, 7, between(r, 8, 18), class)
	}

	out := make([]Session, len(steps))
	dosing := 0
	for i, st := range steps {
		s := Session{Kind: st.kind, Status: "finished", Start: today.AddDate(0, 0, st.day-ref).Add(st.at)}
		if i == done {
			s.Status = "planned"
		}
		switch st.kind {
		case "intake":
			s.PHQ9, s.GAD7 = phq.at(r, 0, true), gad.at(r, 0, true)
		case "integration":
			if s.Status == "finished" {
				s.PHQ9, s.GAD7 = phq.at(r, 1, true), gad.at(r, 1, true)
			}
		case "dosing":
			dosing++
			if c.Stage == Today && i == done {
				s.Status = "in-progress"
				s.Start = o.Now.Add(-70 * time.Minute).Truncate(time.Minute)
			}
			if s.Status != "planned" {
				s.Dose = dose(r, o.Rules, c.Rx, route, s.Start, dosing, class, s.Status == "finished")
				if dosing > 1 {
					// Before each later dose, the total alone: the
					// clinic's quick check (fewer resources per client).
					s.PHQ9 = phq.at(r, float64(dosing-1)/float64(n), false)
				}
			}
		}
		if s.Status == "finished" {
			s.End = s.Start.Add(lengths[st.kind])
			if s.Dose != nil {
				s.End = s.Dose.Ready
			}
		}
		out[i] = s
	}
	return out
}

// dose plans the dose and observation of the k-th dosing session (from 1)
// starting at start; observed: through to the discharge.
func dose(r *rand.Rand, rules kap.Rules, rx Rx, route string, start time.Time, k int, class response, observed bool) *Dose {
	d := &Dose{Mg: rx.DoseMg, At: start.Add(15 * time.Minute)}
	// Titrated to the maximum from the third session when the response is weak.
	if k >= 3 && class >= partial && rx.Dose.Unit == "mg" {
		d.Mg = rx.MaxMg
	}
	switch route {
	case "sublingual": // held 15 minutes, then spat out
		d.Until = d.At.Add(15 * time.Minute)
	case "iv": // infused over 40 minutes
		d.Until = d.At.Add(40 * time.Minute)
	}
	d.Pre = vitals(r, start.Add(5*time.Minute), 0)
	if !observed {
		return d
	}
	end := d.At
	if !d.Until.IsZero() {
		end = d.Until
	}
	d.Post = vitals(r, end.Add(max(rules.PostDoseBloodPressureAfter, 40*time.Minute)+time.Duration(between(r, 0, 10))*time.Minute), between(r, 4, 18))
	d.Ready = later(end.Add(observation(rules, route)), d.Post.At).Add(time.Duration(between(r, 5, 20)) * time.Minute)
	return d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// observation is the clinic's minimum observation after a dose by route
// (the longest configured one for a route the rules do not name, as the
// rules themselves do).
func observation(rules kap.Rules, route string) time.Duration {
	if d, ok := rules.MinObservation[kapRoutes[route]]; ok {
		return d
	}
	var longest time.Duration
	for _, d := range rules.MinObservation {
		longest = max(longest, d)
	}
	return longest
}

// vitals around a dose: ketamine raises blood pressure and heart rate a
// little (rise, in mmHg, is 0 before the dose).
func vitals(r *rand.Rand, at time.Time, rise int) Vitals {
	return Vitals{At: at, Systolic: between(r, 108, 138) + rise, Diastolic: between(r, 68, 86) + rise/2, HR: between(r, 62, 86) + rise/3, SpO2: between(r, 96, 99)}
}

// total is the total score when the fraction f of the series is done.
func (s *scale) total(r *rand.Rand, f float64) int {
	total := s.baseline + int(math.Round(float64(s.target-s.baseline)*math.Pow(f, 0.8)))
	if f > 0 && f < 1 {
		total = min(max(total+between(r, -1, 1), 0), s.items*3)
	}
	return total
}

// scale is a questionnaire's total over the series: from the baseline to
// a target set by the response, with a little noise on the way.
type scale struct {
	items            int
	baseline, target int
}

func newScale(r *rand.Rand, items, baseline int, class response) *scale {
	s := &scale{items: items, baseline: baseline}
	switch class {
	case remitter:
		s.target = between(r, 1, 4)
	case responder:
		s.target = max(5, baseline*between(r, 30, 50)/100)
	case partial:
		s.target = baseline * between(r, 55, 80) / 100
	default:
		s.target = min(items*3, baseline*between(r, 85, 105)/100)
	}
	return s
}

// at is the score when the fraction f of the series is done, with the
// item answers when items is set.
func (s *scale) at(r *rand.Rand, f float64, items bool) *Scale {
	if s == nil {
		return nil
	}
	out := &Scale{Total: s.total(r, f)}
	if !items {
		return out
	}
	out.Items = make([]int, s.items)
	for left := out.Total; left > 0; {
		if j := r.IntN(s.items); out.Items[j] < 3 {
			out.Items[j]++
			left--
		}
	}
	return out
}
