package main

import (
	"context"
	"fmt"
	"sync"
)

// scenario is one interaction, measured on both sides. Operation i of a
// phase gets its index, so scenarios can vary their data deterministically.
// New scenarios (search, history, ...) are new rows of the table.
type scenario struct {
	name string
	// requires lists scenarios that must run earlier in the same run, because
	// this one works on what they made (read needs created resources).
	requires []string
	// perOp is the number of resources one operation writes (0: one).
	perOp int
	http  func(h *httpSide, ctx context.Context, i int) error
	raw   func(r *rawSide, ctx context.Context, i int) error
}

var scenarios = []scenario{
	{name: "create", http: (*httpSide).create, raw: (*rawSide).create},
	{name: "read", requires: []string{"create"}, http: (*httpSide).read, raw: (*rawSide).read},
	{name: "update", requires: []string{"create"}, http: (*httpSide).update, raw: (*rawSide).update},
	searchScenario("search-patient-code"),
	searchScenario("search-patient-date"),
	searchScenario("search-include"),
	{name: "transaction", perOp: txnEntries, http: (*httpSide).transaction, raw: (*rawSide).transaction},
}

func searchScenario(name string) scenario {
	return scenario{name: name, requires: []string{"create"},
		http: httpSearch(name), raw: rawSearch(name)}
}

func scenarioNames() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return names
}

func scenarioByName(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// idPool holds the ids one side created, for the scenarios that follow.
type idPool struct {
	mu  sync.Mutex
	ids []string
}

func (p *idPool) add(id string) {
	p.mu.Lock()
	p.ids = append(p.ids, id)
	p.mu.Unlock()
}

// pick returns the id for operation i: consecutive operations get different
// ids, so concurrent updates rarely touch the same resource.
func (p *idPool) pick(i int) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return "", fmt.Errorf("no resources were created to work on")
	}
	return p.ids[i%len(p.ids)], nil
}

func (p *idPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}
