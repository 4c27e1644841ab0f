package fhir

import (
	"errors"
	"time"
)

// InstantLayout formats server timestamps: UTC with milliseconds, as
// meta.lastUpdated carries them.
const InstantLayout = "2006-01-02T15:04:05.000Z07:00"

// ParseInstant reads a FHIR dateTime used as a point in time (as in
// _since): a full date-time with a zone, or a partial date, which means its
// first instant in UTC.
func ParseInstant(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not a FHIR instant or date")
}

// ValidID reports whether s is a valid logical id (1-64 of A-Z a-z 0-9 - .).
func ValidID(s string) bool { return isID(s) }
