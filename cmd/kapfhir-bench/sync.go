package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// syncEndpoint is the name of the EHR endpoint a -sync-ehr run configures.
const syncEndpoint = "bench"

// syncResult is the EHR sync of a run: the Observations the service
// delivered to the EHR, how fast, and how long after their commit.
type syncResult struct {
	EHR       string `json:"ehr"`
	Delivered int    `json:"delivered"`
	// Seconds is from the first commit to the last delivery.
	Seconds float64 `json:"seconds"`
	// PerSec is the deliveries per second while the sync ran (first to
	// last delivery).
	PerSec float64 `json:"delivered_per_sec"`
	// LagP50 and LagP95 are the seconds from a version's commit (our
	// meta.lastUpdated) to its delivery (the EHR's meta.lastUpdated).
	LagP50 float64 `json:"lag_p50_s"`
	LagP95 float64 `json:"lag_p95_s"`
	// OverCreate is PerSec over the HTTP create throughput of the run.
	OverCreate float64 `json:"over_http_create,omitempty"`
}

// writeSyncConfig writes the endpoints file of a -sync-ehr run: every
// Observation goes to ehr, which is taken to accept their create and update
// (Patients, which the bench does not create, are referred to logically).
func writeSyncConfig(dir, ehr string) (string, error) {
	cfg := map[string]any{"endpoints": []any{map[string]any{
		"name": syncEndpoint, "baseUrl": ehr, "auth": map[string]any{"type": "none"},
		"send": map[string]any{"types": []string{"Observation"}},
		// The stand-in without a CapabilityStatement lists no types.
		"capabilities": map[string]any{"Observation": map[string]any{"create": true, "update": true}},
	}}}
	data, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	f := filepath.Join(dir, "ehr.json")
	return f, os.WriteFile(f, data, 0o600)
}

// adminBase is the service's origin from its FHIR base.
func adminBase(fhirBase string) string { return strings.TrimSuffix(fhirBase, "/fhir") }

// measureSync waits until the service delivered every change, then reads
// the EHR's Observations: each carries our identifier and version tag, so
// its delivery time is compared with the commit time of that version.
func measureSync(ctx context.Context, h *httpSide, origin, ehr string) (*syncResult, error) {
	for {
		var st struct{ Pending, DeadLettered int64 }
		if err := h.getJSON(ctx, origin+"/admin/sync/endpoints/"+syncEndpoint, &st); err != nil {
			return nil, err
		}
		if st.DeadLettered > 0 {
			return nil, fmt.Errorf("the EHR sync dead-lettered %d changes", st.DeadLettered)
		}
		if st.Pending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the EHR sync (%d pending): %w", st.Pending, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	var lags []time.Duration
	var first, last time.Time
	firstDelivery := time.Time{}
	for next := ehr + "/Observation?_count=500"; next != ""; {
		var page struct {
			Link  []struct{ Relation, URL string }
			Entry []struct{ Resource remoteObservation }
		}
		if err := h.getJSON(ctx, next, &page); err != nil {
			return nil, err
		}
		for _, e := range page.Entry {
			local, version := e.Resource.ours()
			if local == "" {
				continue
			}
			var ours struct {
				Meta struct{ LastUpdated time.Time }
			}
			if err := h.getJSON(ctx, h.base+"/"+local+"/_history/"+version, &ours); err != nil {
				return nil, err
			}
			committed, delivered := ours.Meta.LastUpdated, e.Resource.Meta.LastUpdated
			lags = append(lags, delivered.Sub(committed))
			if first.IsZero() || committed.Before(first) {
				first = committed
			}
			if firstDelivery.IsZero() || delivered.Before(firstDelivery) {
				firstDelivery = delivered
			}
			if delivered.After(last) {
				last = delivered
			}
		}
		next = ""
		for _, l := range page.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	if len(lags) == 0 {
		return nil, fmt.Errorf("the EHR holds no Observation of ours")
	}
	slices.Sort(lags)
	r := &syncResult{EHR: ehr, Delivered: len(lags), Seconds: last.Sub(first).Seconds(),
		LagP50: percentile(lags, 50).Seconds(), LagP95: percentile(lags, 95).Seconds()}
	if d := last.Sub(firstDelivery).Seconds(); d > 0 {
		r.PerSec = float64(len(lags)) / d
	}
	return r, nil
}

// remoteObservation is what measureSync reads of an EHR's Observation.
type remoteObservation struct {
	Meta struct {
		LastUpdated time.Time
		Tag         []struct{ System, Code string }
	}
	Identifier []struct{ System, Value string }
}

// ours returns the local Type/id and version the EHR's resource carries.
func (r remoteObservation) ours() (local, version string) {
	for _, id := range r.Identifier {
		if strings.HasPrefix(id.System, "urn:kapfhir:") && strings.HasPrefix(id.Value, "Observation/") {
			local = id.Value
		}
	}
	for _, t := range r.Meta.Tag {
		if t.System == "urn:kapfhir:version" {
			version = url.PathEscape(t.Code)
		}
	}
	if version == "" {
		return "", ""
	}
	return local, version
}
