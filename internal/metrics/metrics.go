// Package metrics defines the service's Prometheus metrics on a registry the
// caller owns. Labels are route templates, interactions, resource types and
// command names: never ids, query strings or resource content.
package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.mongodb.org/mongo-driver/v2/event"
)

// Metrics holds the collectors the service records into.
type Metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	storeDuration   *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec
	reindexJobs     *prometheus.GaugeVec
	reindexed       prometheus.Counter
	// The outbound EHR sync, labelled by endpoint name only.
	syncDelivered *prometheus.CounterVec
	syncFailed    *prometheus.CounterVec
	syncDead      *prometheus.CounterVec
	syncLag       *prometheus.GaugeVec
	syncInFlight  *prometheus.GaugeVec
	// Inbound pull, by endpoint name; Subscription notifications, by
	// outcome only (subscription ids would grow without bound).
	syncPulled    *prometheus.CounterVec
	notifications *prometheus.CounterVec
	// Requests refused by the per-client rate limit: no client label, so
	// the series stay few and carry no identity.
	throttled prometheus.Counter
}

// New registers the service's metrics, the Go and process collectors and
// build info on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_http_requests_total",
			Help: "HTTP requests by FHIR interaction, resource type, method and status code.",
		}, []string{"interaction", "type", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kapfhir_http_request_duration_seconds",
			Help:    "HTTP request duration by FHIR interaction and route template.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"interaction", "route"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kapfhir_store_command_duration_seconds",
			Help:    "MongoDB command duration by command name.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2.5, 12),
		}, []string{"command"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_store_command_errors_total",
			Help: "MongoDB commands that failed, by command name.",
		}, []string{"command"}),
		reindexJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kapfhir_reindex_jobs",
			Help: "Reindex jobs of custom search parameters by state (pending, running, done), as this instance last read them.",
		}, []string{"state"}),
		reindexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kapfhir_reindex_resources_total",
			Help: "Resources this instance scanned in reindex jobs.",
		}),
		syncDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_sync_delivered_total",
			Help: "Changes this instance delivered to an EHR endpoint (created, updated or deleted there).",
		}, []string{"endpoint"}),
		syncFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_sync_failed_total",
			Help: "Delivery attempts to an EHR endpoint that failed and will be retried (429, 5xx, network).",
		}, []string{"endpoint"}),
		syncDead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_sync_dead_lettered_total",
			Help: "Changes this instance put in an EHR endpoint's dead letters.",
		}, []string{"endpoint"}),
		syncLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kapfhir_sync_lag_seconds",
			Help: "Age of the oldest change not yet delivered to an EHR endpoint (0: caught up), as the instance holding its lease last saw it.",
		}, []string{"endpoint"}),
		syncInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kapfhir_sync_in_flight",
			Help: "Changes this instance is delivering to an EHR endpoint (0 or 1).",
		}, []string{"endpoint"}),
		syncPulled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_sync_pulled_total",
			Help: "Resources this instance pulled from an EHR endpoint, by what happened to them (written, unchanged, skipped).",
		}, []string{"endpoint", "result"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_subscription_notifications_total",
			Help: "rest-hook Subscription notifications this instance attempted, by outcome (sent, retried, failed).",
		}, []string{"outcome"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kapfhir_http_throttled_total",
			Help: "Requests refused with 429 by the per-client rate limit.",
		}),
	}
	reg.MustRegister(
		m.requests, m.requestDuration, m.storeDuration, m.storeErrors, m.reindexJobs, m.reindexed,
		m.syncDelivered, m.syncFailed, m.syncDead, m.syncLag, m.syncInFlight,
		m.syncPulled, m.notifications, m.throttled,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	return m
}

// Throttled counts one request refused by the rate limit.
func (m *Metrics) Throttled() { m.throttled.Inc() }

// ObserveRequest records one finished HTTP request.
func (m *Metrics) ObserveRequest(interaction, typ, method, route string, code int, d time.Duration) {
	m.requests.WithLabelValues(interaction, typ, method, strconv.Itoa(code)).Inc()
	m.requestDuration.WithLabelValues(interaction, route).Observe(d.Seconds())
}

// SetReindexJobs sets the number of reindex jobs in a state.
func (m *Metrics) SetReindexJobs(state string, n int) {
	m.reindexJobs.WithLabelValues(state).Set(float64(n))
}

// ReindexedResources counts resources scanned by a reindex job.
func (m *Metrics) ReindexedResources(n int) { m.reindexed.Add(float64(n)) }

// SyncDelivered counts a change delivered to an EHR endpoint.
func (m *Metrics) SyncDelivered(endpoint string) { m.syncDelivered.WithLabelValues(endpoint).Inc() }

// SyncFailed counts a failed delivery attempt that will be retried.
func (m *Metrics) SyncFailed(endpoint string) { m.syncFailed.WithLabelValues(endpoint).Inc() }

// SyncDeadLettered counts a change put in the dead letters.
func (m *Metrics) SyncDeadLettered(endpoint string) { m.syncDead.WithLabelValues(endpoint).Inc() }

// SetSyncLag sets the age of the oldest undelivered change of an endpoint.
func (m *Metrics) SetSyncLag(endpoint string, d time.Duration) {
	m.syncLag.WithLabelValues(endpoint).Set(max(d, 0).Seconds())
}

// SetSyncInFlight sets how many changes this instance is delivering to an
// endpoint.
func (m *Metrics) SetSyncInFlight(endpoint string, n int) {
	m.syncInFlight.WithLabelValues(endpoint).Set(float64(n))
}

// SyncPulled counts a resource pulled from an EHR endpoint; result is a
// fixed class (written, unchanged, skipped).
func (m *Metrics) SyncPulled(endpoint, result string) {
	m.syncPulled.WithLabelValues(endpoint, result).Inc()
}

// Notification counts a Subscription notification attempt by outcome
// (sent, retried, failed).
func (m *Metrics) Notification(outcome string) { m.notifications.WithLabelValues(outcome).Inc() }

// commandNames are the commands the store sends; anything else is counted
// as "other" so a label can never grow without bound.
var commandNames = map[string]bool{
	"find": true, "insert": true, "update": true, "delete": true, "findAndModify": true,
	"aggregate": true, "count": true, "distinct": true, "getMore": true, "killCursors": true,
	"createIndexes": true, "ping": true, "dropDatabase": true, "endSessions": true,
}

func commandLabel(name string) string {
	if commandNames[name] {
		return name
	}
	return "other"
}

// CommandMonitor returns a driver monitor that records command durations.
// next, if not nil, also receives every event (tests count commands).
func (m *Metrics) CommandMonitor(next *event.CommandMonitor) *event.CommandMonitor {
	return &event.CommandMonitor{
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			if next != nil && next.Started != nil {
				next.Started(ctx, e)
			}
		},
		Succeeded: func(ctx context.Context, e *event.CommandSucceededEvent) {
			m.storeDuration.WithLabelValues(commandLabel(e.CommandName)).Observe(e.Duration.Seconds())
			if next != nil && next.Succeeded != nil {
				next.Succeeded(ctx, e)
			}
		},
		Failed: func(ctx context.Context, e *event.CommandFailedEvent) {
			name := commandLabel(e.CommandName)
			m.storeDuration.WithLabelValues(name).Observe(e.Duration.Seconds())
			m.storeErrors.WithLabelValues(name).Inc()
			if next != nil && next.Failed != nil {
				next.Failed(ctx, e)
			}
		},
	}
}

// CommandCounter counts commands by name, for tests and the load tool.
type CommandCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

// Monitor returns a driver monitor feeding the counter.
func (c *CommandCounter) Monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.counts == nil {
			c.counts = map[string]int{}
		}
		c.counts[e.CommandName]++
	}}
}

// Take returns the counts since the last Take and resets them.
func (c *CommandCounter) Take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = nil
	if out == nil {
		out = map[string]int{}
	}
	return out
}
