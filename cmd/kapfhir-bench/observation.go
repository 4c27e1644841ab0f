package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// identifierSystem is the system of the Observations' business identifiers.
const identifierSystem = "urn:oid:1.2.40.0.34.99.4613.3.1"

// observation is the body of operation i: a body-weight vital sign with a
// decimal valueQuantity. The value differs for every i, and update values
// (three decimals) never equal create values (two), so each update makes a
// real new version. id and meta are set when not empty, as for an update body
// or the stored form of a version.
func observation(i int, update bool, id, versionID string, lastUpdated time.Time) []byte {
	var b strings.Builder
	b.Grow(1200)
	b.WriteString(`{"resourceType":"Observation",`)
	if id != "" {
		fmt.Fprintf(&b, `"id":%q,`, id)
	}
	if versionID != "" {
		fmt.Fprintf(&b, `"meta":{"versionId":%q,"lastUpdated":%q},`, versionID, lastUpdated.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	fmt.Fprintf(&b, `"identifier":[{"system":%q,"value":"bench-%d"}],`, identifierSystem, i)
	b.WriteString(`"status":"final",`)
	b.WriteString(`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}]}],`)
	b.WriteString(`"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}],"text":"Body weight"},`)
	fmt.Fprintf(&b, `"subject":{"reference":"Patient/bench-patient-%d","display":"Bench Patient %d"},`, i%500, i%500)
	fmt.Fprintf(&b, `"effectiveDateTime":"2024-%02d-%02dT08:%02d:00+01:00",`, 1+i%12, 1+i%28, i%60)
	b.WriteString(`"performer":[{"reference":"Practitioner/bench-practitioner","display":"Dr. Bench"}],`)
	fmt.Fprintf(&b, `"valueQuantity":{"value":%s,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"},`, weight(i, update))
	b.WriteString(`"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"N","display":"Normal"}]}],`)
	b.WriteString(`"note":[{"text":"Measured in the morning, before breakfast, light clothing."}]}`)
	return []byte(b.String())
}

// weight is a decimal lexeme in kg, different for every i and update.
func weight(i int, update bool) string {
	w := strconv.Itoa(40+i/100) + "." + fmt.Sprintf("%02d", i%100)
	if update {
		w += "5"
	}
	return w
}
