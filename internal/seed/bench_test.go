package seed_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/seed"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

// shapes counts the store's commands by collection and filter shape (the
// filter's keys and operators, values left out) with their total time.
type shapes struct {
	mu      sync.Mutex
	pending map[int64]string
	n       map[string]int
	took    map[string]time.Duration
}

func newShapes() *shapes {
	return &shapes{pending: map[int64]string{}, n: map[string]int{}, took: map[string]time.Duration{}}
}

func (s *shapes) monitor() *event.CommandMonitor {
	done := func(id int64, d time.Duration) {
		s.mu.Lock()
		defer s.mu.Unlock()
		k := s.pending[id]
		delete(s.pending, id)
		s.n[k]++
		s.took[k] += d
	}
	return &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.pending[e.RequestID] = commandShape(e.CommandName, e.Command)
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { done(e.RequestID, e.Duration) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { done(e.RequestID, e.Duration) },
	}
}

func commandShape(name string, cmd bson.Raw) string {
	coll, _ := cmd.Lookup(name).StringValueOK()
	f, ok := cmd.Lookup("filter").DocumentOK()
	if !ok {
		return name + " " + coll
	}
	return name + " " + coll + " " + docShape(f)
}

func docShape(d bson.Raw) string {
	els, _ := d.Elements()
	var parts []string
	for _, e := range els {
		v := e.Value()
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			parts = append(parts, e.Key()+":"+docShape(v.Document()))
		case bson.TypeArray:
			vs, _ := v.Array().Values()
			var sub []string
			for _, x := range vs {
				if doc, ok := x.DocumentOK(); ok {
					sub = append(sub, docShape(doc))
				}
			}
			parts = append(parts, e.Key()+":["+strings.Join(sub, ",")+"]")
		default:
			parts = append(parts, e.Key())
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (s *shapes) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.n))
	for k := range s.n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.took[keys[i]] > s.took[keys[j]] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%6d %10s  %s\n", s.n[k], s.took[k].Round(time.Millisecond), k)
	}
	return b.String()
}

// BenchmarkLoad seeds clinics of 5 and 10 clients on a fresh database and
// logs the store's commands by filter shape.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{5, 10} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			for b.Loop() {
				sh := newShapes()
				st, _ := storetest.Open(b, sh.monitor())
				reg := fhir.NewRegistry()
				rules := kap.DefaultRules()
				mapper, err := kap.NewMapper(rules)
				if err != nil {
					b.Fatal(err)
				}
				svc := kap.NewService(kap.Deps{
					Resources: resource.New(st, reg, time.Now).WithKeeper(kap.NewIndexKeeper(mapper)), Registry: reg, Mapper: mapper, Rules: rules,
					Overrides: kap.NewOverrideCounter(prometheus.NewRegistry()), Now: time.Now, Cursors: search.NewCursors("bench"),
				})
				clinic := seed.Plan(seed.Options{Clients: n, Seed: 1, Now: now, Rules: rules})
				if _, err := seed.Load(context.Background(), svc, clinic, seed.LoadOptions{}); err != nil {
					b.Fatal(err)
				}
				b.Logf("commands by shape:\n%s", sh.report())
			}
		})
	}
}
