package httpapi_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Acceptance tests of FHIR search over real data: the official R4 examples
// and Synthea bundles, each query with the exact set of ids it must return.
// Every expected set was derived by reading the data (jq and small scripts
// over testdata/, applying the rules of http://hl7.org/fhir/R4/search.html
// and docs/fhir-behaviour.md), never by asking the server. A comment says
// why the ids match where the query does not make it obvious.

// exactCase is one search and its answer: the ids of the matches and the
// Type/id of the included resources, both in any order.
type exactCase struct {
	query    string
	matches  []string
	includes []string
}

// exactExtra are official R4 examples not in testdata/r4-examples (copied
// from the same npm package, hl7.fhir.r4.examples 4.0.1): RiskAssessment is
// the only type of the examples with a number search parameter.
const exactExtra = "testdata/search-exact/*.json"

// loadExamples PUTs the example files matching patterns under their own
// ids, and returns the Type/id of those the server rejected.
func loadExamples(e *env, patterns ...string) []string {
	e.t.Helper()
	var rejected []string
	for _, p := range patterns {
		for _, ex := range readExamples(e.t, p) {
			r := e.do("PUT", "/fhir/"+ex.typ+"/"+ex.id, string(ex.body), "Prefer", "return=minimal")
			if r.status >= 300 {
				rejected = append(rejected, ex.typ+"/"+ex.id)
			}
		}
	}
	return rejected
}

// runExact runs each case as a subtest and compares both id sets.
func runExact(t *testing.T, e *env, cases []exactCase) {
	t.Helper()
	sorted := cmpopts.SortSlices(func(a, b string) bool { return a < b })
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			sep := "?"
			if strings.Contains(tc.query, "?") {
				sep = "&"
			}
			r := do(t, e.srv.URL, "GET", "/fhir/"+tc.query+sep+"_count=1000", "")
			matches, includes, outcome := searchEntries(t, r)
			if outcome != "" {
				t.Errorf("unexpected OperationOutcome entry: %s", outcome)
			}
			if diff := cmp.Diff(tc.matches, matches, sorted, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.includes, includes, sorted, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("includes (-want +got):\n%s", diff)
			}
		})
	}
}

// The vital-signs profile is on these 12 Observations.
var vitalSigns = []string{"blood-pressure", "blood-pressure-cancel", "blood-pressure-dar", "bmi", "body-height", "body-length",
	"body-temperature", "head-circumference", "heart-rate", "respiratory-rate", "satO2", "vitals-panel"}

// vitals1999 are the Observations made on 1999-07-02 (a date without time).
var vitals1999 = []string{"bmi", "bmi-using-related", "body-height", "body-length", "body-temperature",
	"head-circumference", "heart-rate", "mbp", "respiratory-rate", "vitals-panel"}

func exampleCases(before string) []exactCase {
	all := func(ids ...string) []string { return ids }
	return []exactCase{
		// string on HumanName: starts-with of family, given, prefix,
		// suffix or text, ignoring case and accents.
		{query: "Patient?name=chalm", matches: all("example")},
		{query: "Patient?name=PETER", matches: all("example")}, // given Peter (Pieter of f001 is not a prefix)
		{query: "Patient?family=solo", matches: all("infant-mom", "infant-twin-1", "infant-twin-2")},
		{query: "Patient?given=ja", matches: all("example", "infant-twin-1", "infant-twin-2")}, // James, Jaina, Jacen
		{query: "Patient?name=roel", matches: all("f201")},                                     // text "Roel", given "Roelof Olaf"
		{query: "RelatedPerson?name=benedicte", matches: all("benedicte")},                     // given Bénédicte
		{query: "RelatedPerson?name=DU%20MARCHE", matches: all("benedicte")},                   // family du Marché
		{query: "Practitioner?name=juri", matches: all("f203")},                                // only the text "Juri van Gelder"
		{query: "Practitioner?name=van%20den", matches: all("f001", "f006")},                   // van den broek, van den Berk
		// :exact is the whole value, case and accents included.
		{query: "Patient?name:exact=Chalmers", matches: all("example")},
		{query: "Patient?name:exact=chalmers"},
		{query: "Patient?name:exact=Chalm"},
		{query: "RelatedPerson?name:exact=du%20March%C3%A9", matches: all("benedicte")},
		{query: "RelatedPerson?name:exact=du%20Marche"},
		{query: "Practitioner?family:exact=van%20den%20broek", matches: all("f001")},
		{query: "Practitioner?family:exact=Van%20den%20broek"},
		// :contains anywhere in a value.
		{query: "Patient?name:contains=owel", matches: all("pat3", "pat4")}, // Notsowell
		{query: "Practitioner?name:contains=gelder", matches: all("f203")},
		{query: "Practitioner?name=gelder"}, // not a prefix of any part
		// string on Address: each part (line, city, postalCode, text, ...).
		{query: "Patient?address-city=amsterdam", matches: all("f001", "f201")},
		{query: "Patient?address=534", matches: all("example")}, // line and text start with 534
		{query: "Patient?address=erewhon"},                      // inside the line, not a prefix
		{query: "Patient?address:contains=erewhon", matches: all("example")},
		{query: "Patient?address-postalcode=3999", matches: all("example")},
		{query: "Practitioner?address-city=den%20helder", matches: all("f201", "f202", "f203", "f204")},
		{query: "RelatedPerson?address=43%5C,%20place%20du%20marche", matches: all("benedicte")}, // line "43, Place du Marché Sainte Catherine", \, escapes the comma
		// plain string (Organization.name | Organization.alias).
		{query: "Organization?name=burgers%20umc", matches: all("f002", "f003")},
		{query: "Organization?name=hl7", matches: all("hl7", "hl7pay")}, // alias "HL7 International", name "HL7 Payer network"
		{query: "Organization?name=abc", matches: all("2")},             // alias "ABC Insurance"
		// \, is a comma inside the value: "Burgers UMC Ear,Nose,Throat unit".
		{query: "Organization?name=burgers%20umc%20ear%5C,nose", matches: all("f003")},
		// unescaped, the comma ORs: "amsterdam" or "chalmers"; escaped, one value no name starts with.
		{query: "Patient?address-city=amsterdam,pleasantville", matches: all("example", "f001", "f201")},
		{query: "Patient?address-city=amsterdam%5C,pleasantville"},
		{query: "Patient?name:missing=true", matches: all("infant-fetal", "newborn", "proband")},
		{query: "Observation?value-string=blue", matches: all("eye-color")},
		{query: "Observation?value-string=yes", matches: all("secondsmoke")}, // valueCodeableConcept.text "YES"

		// token on Identifier.
		{query: "Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|123457", matches: all("pat3")},
		{query: "Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|", matches: all("pat1", "pat2", "pat3", "pat4")},
		{query: "Patient?identifier=12345", matches: all("example", "xcda")}, // any system
		{query: "Patient?identifier=|AB60001", matches: all("ihe-pcd")},      // the only identifier without a system
		{query: "Patient?identifier=|12345"},                                 // both 12345 have a system
		// \| makes the pipe part of the code: no identifier value has one.
		{query: "Patient?identifier=urn:oid:0.1.2.3.4.5.6.7%5C|123457"},
		{query: "Patient?identifier:text=bsn", matches: all("f201")}, // Identifier.type.text "BSN"
		// :of-type: the identifier's type coding and its value, on one identifier.
		{query: "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345", matches: all("example", "xcda")},
		{query: "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123456", matches: all("glossy", "pat2")},
		{query: "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SS|444222222", matches: all("genetics-example1", "mom")},
		{query: "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|444222222"}, // the 444222222 are SS
		// token on CodeableConcept.
		{query: "Observation?code=http://loinc.org|85354-9", matches: all("blood-pressure", "blood-pressure-cancel", "blood-pressure-dar")},
		{query: "Observation?code=8310-5", matches: all("body-temperature", "f202")},
		{query: "Observation?code=http://snomed.info/sct|8310-5"},
		{query: "Observation?code=http://acme.org/devices/clinical-codes|", matches: all("example", "herd1")},
		{query: "Observation?code=http://loinc.org|8867-4,http://loinc.org|9279-1", matches: all("heart-rate", "respiratory-rate")},
		{query: "Observation?code:text=blood%20pressure", matches: all("blood-pressure", "blood-pressure-cancel", "blood-pressure-dar")}, // not "Mean blood pressure"
		{query: "Observation?code:text=glucose", matches: all("f001", "unsat")},
		{query: "Observation?value-concept:text=positive", matches: all("example-genetics-1", "example-genetics-2", "vp-oyster")},
		{query: "Observation?value-concept=http://snomed.info/sct|112144000", matches: all("bloodgroup", "rhstatus")},
		// token on Coding (Encounter.class) and :not (which also matches
		// resources without the element; every Encounter has a class).
		{query: "Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|HH", matches: all("home")},
		{query: "Encounter?class=IMP", matches: all("emerg", "example", "f203")},
		{query: "Encounter?class:not=AMB", matches: all("emerg", "example", "f203", "home")},
		// token on code.
		{query: "Patient?gender=other", matches: all("pat2")},
		{query: "Encounter?status=in-progress", matches: all("emerg", "example")},
		// :not matches the other genders and no gender (ihe-pcd has none).
		{query: "Patient?gender:not=male", matches: all("animal", "genetics-example1", "ihe-pcd", "infant-mom", "infant-twin-1", "mom", "pat2", "pat4", "proband")},
		// token on boolean.
		{query: "Organization?active=true", matches: all("f002", "f003", "f201", "f203", "mmanu")},
		{query: "Patient?deceased=true", matches: all("pat3", "pat4")}, // deceasedDateTime, deceasedBoolean true
		// :missing on a token.
		{query: "Patient?active:missing=true", matches: all("infant-fetal", "infant-mom", "infant-twin-1", "infant-twin-2", "newborn")},
		{query: "Organization?active:missing=false", matches: all("f002", "f003", "f201", "f203", "mmanu")},
		// token on ContactPoint.
		{query: "Patient?email=p.heuvel@gmail.com", matches: all("f001")},
		{query: "Practitioner?phone=%2B31715269111", matches: all("f201", "f202", "f203")},
		{query: "Practitioner?phone=%2B3171526"}, // a token is the whole value
		// ContactPoint.system (phone, email) is a kind, not a code system:
		// the search.html token table maps ContactPoint to a value only
		// (the telecom value "has no system"), so email|... finds nothing.
		{query: "Practitioner?telecom=0205568263", matches: all("f001")},
		{query: "Practitioner?telecom=|p.voigt@bmc.nl", matches: all("f002")},
		{query: "Practitioner?telecom=email|p.voigt@bmc.nl"},

		// reference: Type/id, bare id (any type), :Type, absolute URL.
		{query: "Observation?subject=Patient/f201", matches: all("f202", "f203", "f204", "f205", "f206")},
		{query: "Observation?subject=f201", matches: all("f202", "f203", "f204", "f205", "f206")},
		{query: "Observation?subject=herd1", matches: all("herd1")}, // Group/herd1
		{query: "Observation?subject:Group=herd1", matches: all("herd1")},
		{query: "Observation?subject:Patient=herd1"},
		{query: "Observation?subject=Group/herd1,Patient/pat2", matches: all("bmd", "date-lastmp", "herd1")},
		{query: "QuestionnaireResponse?subject=http://hl7.org/fhir/Patient/1", matches: all("bb")},
		{query: "ServiceRequest?subject=https://fhir.orionhealth.com/blaze/fhir/Patient/77662", matches: all("myringotomy")},
		// a versioned reference (Patient/example/_history/1) matches its resource.
		{query: "AuditEvent?entity=Patient/example", matches: all("example-disclosure", "example-rest")},
		// :identifier matches Reference.identifier.
		{query: "Observation?based-on:identifier=https://acme.org/identifiers|1234", matches: all("blood-pressure")},
		{query: "AuditEvent?agent:identifier=|Grahame", matches: all("example")},
		{query: "AuditEvent?agent:identifier=95", matches: all("example-error", "example-login", "example-logout", "example-media", "example-pixQuery", "example-rest", "example-search")},
		// :missing on a reference.
		{query: "Patient?general-practitioner:missing=false", matches: all("glossy", "infant-mom")},
		// chaining: the Observations of the patient named Bor (f201), of
		// the one with that identifier (f001).
		{query: "Observation?subject:Patient.name=bor", matches: all("f202", "f203", "f204", "f205", "f206")},
		{query: "Observation?subject:Patient.identifier=urn:oid:2.16.840.1.113883.2.4.6.3|738472983", matches: all("ekg", "f001", "f002", "f003", "f004", "f005", "unsat")},
		{query: "Encounter?subject:Patient.birthdate=1974-12-25", matches: all("emerg", "example", "home")}, // Patient/example; ch-example has no Encounter
		// _has: the Patients an Observation of that code refers to.
		{query: "Patient?_has:Observation:subject:code=http://loinc.org|85354-9", matches: all("example")},
		// value over 100: 656 (Patient/PatientId-patientId, not stored), example (Patient/example), f204 (Patient/f201).
		{query: "Patient?_has:Observation:subject:value-quantity=gt100", matches: all("example", "f201")},
		{query: "Patient?_has:Observation:subject:code=http://loinc.org|883-9"}, // Patient/infant is not among the examples
		{query: "Patient?_has:Encounter:subject:class=AMB", matches: all("f001", "f201", "xcda")},
		// _include / _revinclude.
		{query: "Observation?_id=blood-pressure,f202&_include=Observation:subject", matches: all("blood-pressure", "f202"), includes: all("Patient/example", "Patient/f201")},
		{query: "Observation?_id=herd1&_include=Observation:subject", matches: all("herd1")}, // Group/herd1 is not stored
		{query: "Encounter?_id=f001,home&_include=Encounter:subject:Patient", matches: all("f001", "home"), includes: all("Patient/f001", "Patient/example")},
		{query: "Patient?_id=f201&_revinclude=Encounter:subject", matches: all("f201"), includes: all("Encounter/f201", "Encounter/f202", "Encounter/f203")},
		{query: "Patient?_id=f201&_revinclude=Condition:subject&_include=Patient:organization", matches: all("f201"),
			includes: all("Condition/f201", "Condition/f202", "Condition/f203", "Condition/f204", "Condition/f205", "Organization/f201")},

		// date on a date (Patient.birthDate): the value's range by precision.
		{query: "Patient?birthdate=1974-12-25", matches: all("ch-example", "example")},
		{query: "Patient?birthdate=1974-12", matches: all("ch-example", "example")},
		{query: "Patient?birthdate=1974", matches: all("ch-example", "example")},
		{query: "Patient?birthdate=1974-12-25T10:00:00Z"}, // a day is not within a second
		{query: "Patient?birthdate=eq2017-05", matches: all("infant-twin-1", "infant-twin-2")},
		{query: "Patient?birthdate=lt1940", matches: all("glossy", "xcda")},
		{query: "Patient?birthdate=gt2017-05-15", matches: all("newborn")},
		{query: "Patient?birthdate=ge2017-05-15", matches: all("infant-twin-1", "infant-twin-2", "newborn")},
		{query: "Patient?birthdate=le1932-09-24", matches: all("glossy", "xcda")},
		{query: "Patient?birthdate=sa2017"},
		{query: "Patient?birthdate=sa2016", matches: all("infant-twin-1", "infant-twin-2", "newborn")},
		{query: "Patient?birthdate=eb1933", matches: all("glossy", "xcda")},
		{query: "Patient?birthdate=ne1932-09-24&birthdate=lt1950", matches: all("f001")}, // AND by repeating
		{query: "Patient?birthdate=ap1944-11-17", matches: all("f001")},                  // ±8 years around 1944: nothing else born 1933-1955
		{query: "Patient?birthdate:missing=true", matches: all("dicom", "ihe-pcd", "infant-fetal", "pat1", "pat2")},
		// date on a dateTime with a zone: compared as instants.
		{query: "Patient?death-date=2015-02-14", matches: all("pat3")}, // 2015-02-14T13:42:00+10:00 is 03:42Z
		{query: "Patient?death-date=sa2015-02-13", matches: all("pat3")},
		{query: "Observation?date=2018-03-11T16:07:54Z", matches: all("bgpanel", "bloodgroup", "rhstatus", "trachcare")}, // written +00:00
		{query: "Observation?date=2018-03-11T17:07:54%2B01:00", matches: all("bgpanel", "bloodgroup", "rhstatus", "trachcare")},
		{query: "Observation?date=2018-03-11T16:07:54%2B01:00"},
		{query: "Observation?date=2017-05-03", matches: all("656")}, // 15:54:26-04:00 is 19:54:26Z, still that day
		{query: "Observation?date=2014-12-05", matches: all("satO2")},
		// a dateTime without time (1999-07-02) covers the whole day.
		{query: "Observation?date=eb1999-07-03", matches: vitals1999},
		{query: "Observation?date=eb1999-07-02"},
		{query: "Observation?date=ap1999-07-02", matches: vitals1999}, // ±2.6 years: the next Observation is of 2012
		// date on a Period: eq needs the whole period inside; an open end
		// extends forever (f001 starts 2013-04-02 and has no end).
		{query: "Observation?date=2013-04", matches: all("f002", "f003", "f004", "f005", "unsat")},
		{query: "Observation?date=2013", matches: all("f002", "f003", "f004", "f005", "unsat")},
		{query: "Observation?date=2013-04-02"},
		// map-sitting ends 2018-04-05T10:30:10+01:00 (09:30:10Z); abdo-tender and f001 have no end.
		{query: "Observation?date=gt2018-04-05T09:30:10Z", matches: all("abdo-tender", "f001")},
		{query: "Observation?date=ge2018-04-05T09:30:10Z", matches: all("abdo-tender", "f001", "map-sitting")},
		{query: "Encounter?date=2013-03", matches: all("f203")}, // 2013-03-11 to 2013-03-20
		{query: "Encounter?date=2013-03-15"},
		{query: "Encounter?date=gt2013-03-15", matches: all("emerg", "f203", "home")},
		{query: "Encounter?date=sa2013-03-15", matches: all("emerg", "home")},
		{query: "Encounter?date=lt2013-03-15", matches: all("f203")},
		{query: "Encounter?date=le2013-03-11", matches: all("f203")},
		{query: "Encounter?date=eb2013-03-21", matches: all("f203")},
		{query: "Encounter?date=eb2013-03-20"},
		{query: "Encounter?date=ne2013-03", matches: all("emerg", "home")},
		{query: "Encounter?date=2015-01-17", matches: all("home")}, // 16:00-16:30+10:00 is 06:00-06:30Z
		// emerg starts 2017-02-01T07:15:00+10:00, 2017-01-31T21:15Z, no end.
		{query: "Encounter?date=2017-02-01"},
		{query: "Encounter?date=sa2017-01-31"},
		{query: "Encounter?date=lt2017-02-01&date=gt2016", matches: all("emerg")},
		{query: "Condition?onset-date=2011", matches: all("f001", "f002")},
		{query: "Condition?onset-date=2013-03", matches: all("f203", "f204")},
		{query: "Condition?onset-date=le2010-12-31", matches: all("stroke")},
		// _lastUpdated: the server sets it at load time.
		{query: "RiskAssessment?_lastUpdated=gt" + before, matches: all("breastcancer-risk", "cardiac", "genetic", "population", "prognosis", "riskexample")},
		{query: "RiskAssessment?_lastUpdated=lt" + before},

		// number (RiskAssessment.prediction.probability): cardiac 0.02,
		// riskexample 0.000368, genetic 0.000168 ... 0.001663 (8 values).
		{query: "RiskAssessment?probability=0.02", matches: all("cardiac")},
		{query: "RiskAssessment?probability=0.000368", matches: all("genetic", "riskexample")},
		{query: "RiskAssessment?probability=0.0004", matches: all("genetic", "riskexample")}, // [0.00035, 0.00045)
		{query: "RiskAssessment?probability=0.00036"},                                        // [0.000355, 0.000365)
		{query: "RiskAssessment?probability=gt0.01", matches: all("cardiac")},
		{query: "RiskAssessment?probability=lt0.0002", matches: all("genetic")},
		{query: "RiskAssessment?probability=ge0.02", matches: all("cardiac")},
		{query: "RiskAssessment?probability=le0.000168", matches: all("genetic")},
		{query: "RiskAssessment?probability=ne0.02", matches: all("genetic", "riskexample")},
		{query: "RiskAssessment?probability=sa0.0015", matches: all("cardiac", "genetic")}, // 0.001663 is above [0.00145, 0.00155)
		{query: "RiskAssessment?probability=eb0.0002"},                                     // 0.000168 is inside [0.00015, 0.00025)
		{query: "RiskAssessment?probability=ap0.02", matches: all("cardiac")},
		{query: "RiskAssessment?probability=gt0.0016&probability=lt0.0002", matches: all("genetic")}, // two values of genetic

		// quantity.
		{query: "Observation?value-quantity=185", matches: all("example")},
		{query: "Observation?value-quantity=6", matches: all("f001", "f003")}, // [5.5, 6.5): 6.3 and 6.2
		{query: "Observation?value-quantity=6.0"},
		{query: "Observation?value-quantity=16.2|http://unitsofmeasure.org|kg/m2", matches: all("bmi", "bmi-using-related")},
		{query: "Observation?value-quantity=16.2|http://snomed.info/sct|kg/m2"},
		{query: "Observation?value-quantity=39||degrees%20C", matches: all("f202")}, // the unit text
		{query: "Observation?value-quantity=39||Cel", matches: all("f202")},         // the code
		{query: "Observation?value-quantity=gt500", matches: all("656")},
		{query: "Observation?value-quantity=lt1", matches: all("1minute-apgar-score", "bmd", "herd1")},
		{query: "Observation?value-quantity=le0", matches: all("1minute-apgar-score")},
		{query: "Observation?value-quantity=ge122", matches: all("656", "example", "f204")},
		{query: "Observation?value-quantity=sa120", matches: all("656", "example", "f204")},
		{query: "Observation?value-quantity=eb5", matches: all("1minute-apgar-score", "bmd", "f004", "herd1")},
		{query: "Observation?value-quantity=ap44", matches: all("heart-rate")},
		{query: "Observation?value-quantity=107"}, // only components have 107
		{query: "Observation?component-value-quantity=107", matches: all("blood-pressure", "blood-pressure-dar")},
		{query: "Observation?combo-value-quantity=107", matches: all("blood-pressure", "blood-pressure-dar")},
		{query: "Observation?component-value-quantity=lt0", matches: all("decimal")},    // -1.0E+245
		{query: "Observation?component-value-quantity=gt1e17", matches: all("decimal")}, // 1000000000000000000
		{query: "Encounter?length=140", matches: all("f001", "f002")},
		{query: "Encounter?length=140|http://unitsofmeasure.org|min", matches: all("f001", "f002")},
		{query: "Encounter?length=56||minutes", matches: all("f202")},
		{query: "Encounter?length=lt100", matches: all("f003", "f202")},
		{query: "Encounter?length=ap95", matches: all("f003")},
		{query: "Encounter?length=ne140", matches: all("f003", "f202")},
		{query: "Condition?onset-age=52", matches: all("f202")},
		{query: "Condition?abatement-age=lt60||a", matches: all("f202")},
		// composites pair within one element.
		{query: "Observation?code-value-quantity=http://loinc.org|8867-4$44", matches: all("heart-rate")},
		{query: "Observation?code-value-quantity=8310-5$gt37", matches: all("f202")}, // 39 Cel; body-temperature is 36.5
		{query: "Observation?component-code-value-quantity=http://loinc.org|8480-6$107", matches: all("blood-pressure", "blood-pressure-dar")},
		{query: "Observation?component-code-value-quantity=8462-4$60", matches: all("blood-pressure")},
		{query: "Observation?component-code-value-quantity=8462-4$107"}, // 107 is the systolic
		{query: "Observation?combo-code-value-quantity=8480-6$107", matches: all("blood-pressure", "blood-pressure-dar")},
		{query: "Observation?combo-code-value-quantity=8310-5$36.5", matches: all("body-temperature")},
		{query: "Observation?combo-code-value-quantity=85354-9$107"}, // the panel code has no value
		{query: "Observation?code-value-concept=http://loinc.org|883-9$http://snomed.info/sct|112144000", matches: all("bloodgroup", "rhstatus")},
		{query: "Observation?code-value-string=http://snomed.info/sct|363779003$*1/*4", matches: all("example-TPMT-diplotype")},
		// \$ is part of the string: "*1/*4$x" is no prefix of "*1/*4".
		{query: "Observation?code-value-string=http://snomed.info/sct|363779003$*1/*4%5C$x"},

		// uri.
		{query: "CapabilityStatement?url=http://hl7.org/fhir/CapabilityStatement/base", matches: all("base")},
		{query: "CapabilityStatement?url:below=http://hl7.org/fhir/CapabilityStatement", matches: all("base", "base2")},
		{query: "ActivityDefinition?url:below=http://motivemi.com/artifacts", matches: all("citalopramPrescription", "referralPrimaryCareMentalHealth", "referralPrimaryCareMentalHealth-initial")},
		{query: "ActivityDefinition?url=http://motivemi.com/artifacts/ActivityDefinition/referralPrimaryCareMentalHealth", matches: all("referralPrimaryCareMentalHealth", "referralPrimaryCareMentalHealth-initial")},
		{query: "CapabilityStatement?url:above=http://hl7.org/fhir/CapabilityStatement/base/x/y", matches: all("base")},
		{query: "Questionnaire?url:above=http://hl7.org/fhir/Questionnaire/bb/1", matches: all("bb")},
		{query: "Procedure?instantiates-uri=http://example.org/protocol-for-hypertension-during-pregnancy", matches: all("ambulation")},

		// _id, _profile, _security.
		{query: "Patient?_id=pat1,pat3", matches: all("pat1", "pat3")},
		{query: "Patient?_id=pat1&_id=pat3"},
		{query: "Observation?_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns", matches: vitalSigns},
		{query: "Condition?_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|TBOO", matches: all("f202")},
	}
}

// TestSearchExactSynthea runs searches over the Synthea subset the
// differential test loads (3 patients, the hospital and practitioner
// bundles: 488 resources, every one tagged synthea-5-2019). Patients:
// Hoeger e4531916-..., Kreiger d78af07c-..., McCullough ca95b2c5-....
func TestSearchExactSynthea(t *testing.T) {
	t.Parallel() // long, on its own database: uses the second CPU while the rest run
	e := newEnv(t)
	loadSynthea(t, e.srv.URL)
	const (
		hoeger     = "e4531916-b162-4f4b-90c2-ce37e132b8d4"
		kreiger    = "d78af07c-9cb9-4f31-9b11-c45a28f2eec8"
		mccullough = "ca95b2c5-d306-44d4-a7fa-756de736e68e"
	)
	all := func(ids ...string) []string { return ids }
	runExact(t, e, []exactCase{
		{query: "Patient?_tag=synthea-5-2019", matches: all(hoeger, kreiger, mccullough)},
		{query: "Patient?_tag=https://smarthealthit.org/tags|synthea-5-2019&gender=female", matches: all(mccullough)},
		{query: "Patient?_tag=https://smarthealthit.org/tags|synthea-5-2018"},
		{query: "Patient?address-city=saugus", matches: all(mccullough)},
		{query: "Patient?birthdate=1984", matches: all(kreiger)},
		{query: "Patient?name=mr.", matches: all(hoeger, kreiger)}, // prefix "Mr."
		// Blood pressures (55284-4) of 2012: McCullough's and Kreiger's.
		{query: "Observation?code=http://loinc.org|55284-4&date=2012", matches: all("a9e6fa91-33e4-4aa9-9d4f-3b0518c966bd", "d1b60d57-c1a2-4b70-b18a-34169ada507e")},
		{query: "Observation?code=55284-4&subject:Patient.name=hoeger", matches: all("13bfaf3c-434f-4e12-839a-5ee9cfd30dd8", "1d79cde6-7d89-4f54-9e69-0d3796485a7a", "37663719-c702-4588-964e-27d987ab94ed")},
		// Diastolic over 100: 106.93 and 101.59 (McCullough, 2017 and 2018).
		{query: "Observation?component-code-value-quantity=http://loinc.org|8462-4$gt100", matches: all("68cdfa0f-cecd-4cc2-b015-578dd6a2bbba", "d9b36a9c-907c-49d7-916b-69aa2071a02f")},
		{query: "Observation?component-code-value-quantity=8480-6$gt150", matches: all("d9b36a9c-907c-49d7-916b-69aa2071a02f")}, // 158.47
		// 68cdfa0f has a systolic of 149.3 and a diastolic of 106.9: no diastolic over 140.
		{query: "Observation?component-code-value-quantity=8462-4$gt140"},
		// Total cholesterol (2093-3): 183.76, 184.85 (Kreiger), 193.36 (Hoeger) mg/dL.
		{query: "Observation?combo-code-value-quantity=http://loinc.org|2093-3$gt190", matches: all("93feb948-c936-4c37-b2db-a41a5f8f1ab7")},
		{query: "Observation?code-value-quantity=2093-3$lt185|http://unitsofmeasure.org|mg/dL", matches: all("b512ea5d-c4c2-49e4-9eb1-30b2579136c4", "bd0df80e-b4b8-4018-82a4-77b2736a7bb4")},
		{query: "Observation?code-value-quantity=2093-3$lt185|http://unitsofmeasure.org|mg"},
		// Oral temperatures (8331-1): 37.66, 37.17, 37.36 Cel.
		{query: "Observation?code=8331-1&value-quantity=gt37.3||Cel", matches: all("30e5c63d-e5c9-4448-a2de-9faad18cfb79", "aa837d14-80d7-4e8a-817c-3a469079e708")},
		{query: "Patient?_has:Observation:subject:code-value-quantity=http://loinc.org|2093-3$gt190", matches: all(hoeger)},
	})
}
