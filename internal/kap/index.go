package kap

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// The client index: List/<client>-kap (code kap#client-records) lists the
// resources of clientTypes the KAP API wrote for a client, so that the
// rules read a client's records by id instead of by a search (on the
// embedded store a search decodes every stored resource: its cost grows
// with the whole clinic, a read by id does not). Each KAP write updates the
// index in its own unit with If-Match on the version it read, so concurrent
// writes cannot lose entries (one of them is a 409). Resources written
// through the FHIR API are not in it: the reads that must see them merge
// the compartment search (see programRecords).

// indexCode is the kap code of the index List.
const indexCode = "client-records"

// indexID is the id of a client's index; false when the client's id is too
// long to derive one (the client is then always read by search).
func indexID(clientID string) (string, bool) {
	id := clientID + "-kap"
	return id, idRE.MatchString(id)
}

// clientIndex is a client's index as read.
type clientIndex struct {
	id      string
	version int64 // 0: not stored
	refs    []string
	labels  mappings.Labels
}

type indexJSON struct {
	Meta struct {
		Security []mappings.Coding `json:"security"`
	} `json:"meta"`
	Entry []struct {
		Item struct {
			Reference string `json:"reference"`
		} `json:"item"`
	} `json:"entry"`
}

// readIndex reads a client's index; nil when the client has none (a
// client written through /fhir, or by a version without the index) or
// cannot have one.
func (s *Service) readIndex(ctx context.Context, clientID string) (*clientIndex, error) {
	id, ok := indexID(clientID)
	if !ok {
		return nil, nil
	}
	rec, err := s.res.Read(ctx, "List", id)
	if fault.Is(err, fault.NotFound) || fault.Is(err, fault.Gone) {
		return &clientIndex{id: id}, nil
	}
	if err != nil {
		return nil, err
	}
	var l indexJSON
	if err := json.Unmarshal([]byte(rec.Raw), &l); err != nil {
		return nil, fault.Wrap(err, "KAP index")
	}
	idx := &clientIndex{id: id, version: rec.VersionID}
	for _, e := range l.Entry {
		idx.refs = append(idx.refs, e.Item.Reference)
	}
	idx.labels.SubstanceUse = slices.ContainsFunc(l.Meta.Security, func(c mappings.Coding) bool { return c.Code == "42CFRPart2" })
	return idx, nil
}

func (idx *clientIndex) labelsOrNone() mappings.Labels {
	if idx == nil {
		return mappings.Labels{}
	}
	return idx.labels
}

// indexed reads the current resources of clientTypes the index lists (one
// read by id each); deleted ones are left out.
func (s *Service) indexed(ctx context.Context, idx *clientIndex) ([]*store.Record, error) {
	var refs []string
	for _, ref := range idx.refs {
		if typ, id, ok := strings.Cut(ref, "/"); ok && idRE.MatchString(id) && slices.Contains(clientTypes, typ) {
			refs = append(refs, ref)
		}
	}
	return s.read(ctx, refs)
}

// indexOp is the write of the client's index in the unit of rs (the
// resources of one client's request): it adds the resources of
// clientTypes among rs and the labels l. nil when nothing changes or rs
// are not one client's. A client without an index gets one listing its
// compartment too (written once, then kept up to date by every KAP write).
func (s *Service) indexOp(ctx context.Context, rs []mappings.Resource, l mappings.Labels) (*resource.Op, error) {
	clients := refsTo(rs, "Patient", true)
	if len(clients) != 1 { // none (a team member), or not one client's
		return nil, nil
	}
	idx, err := s.readIndex(ctx, clients[0])
	if idx == nil || err != nil {
		return nil, err
	}
	refs := idx.refs
	if idx.version == 0 {
		recs, err := s.compartment(ctx, clients[0], clientTypes)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			refs = append(refs, store.Key(rec.Type, rec.ID))
		}
	}
	var add []string
	for _, r := range rs {
		if slices.Contains(clientTypes, r.Type) {
			add = append(add, r.Ref())
		}
	}
	return s.indexUpdate(idx, clients[0], refs, add, l)
}

// indexUpdate is the write of idx with add and labels l added; nil when
// that changes nothing. Labels only grow: a client in a substance-use
// program keeps them.
func (s *Service) indexUpdate(idx *clientIndex, clientID string, refs, add []string, l mappings.Labels) (*resource.Op, error) {
	n := len(refs)
	for _, r := range add {
		if !slices.Contains(refs, r) {
			refs = append(refs, r)
		}
	}
	if idx.version != 0 && n == len(refs) && (idx.labels.SubstanceUse || !l.SubstanceUse) {
		return nil, nil
	}
	l.SubstanceUse = l.SubstanceUse || idx.labels.SubstanceUse
	return s.indexWrite(idx, clientID, refs, l)
}

// heal adds to a client's index the records a compartment search found
// that it did not list (written through /fhir), so the next writes' rules
// read them by id. Best effort, in a unit of its own: a concurrent KAP
// write (409) or a failure leaves the index as it was, still correct for
// what it lists.
func (s *Service) heal(ctx context.Context, idx *clientIndex, clientID string, found []*store.Record) {
	var add []string
	for _, rec := range found {
		add = append(add, store.Key(rec.Type, rec.ID))
	}
	op, err := s.indexUpdate(idx, clientID, idx.refs, add, idx.labels)
	if op == nil || err != nil {
		return
	}
	_ = s.commit(ctx, []*resource.Op{op}, nil)
}

// indexWrite is the op storing idx with refs: an update of the version
// read, or a create that fails if another request created it meanwhile.
func (s *Service) indexWrite(idx *clientIndex, clientID string, refs []string, l mappings.Labels) (*resource.Op, error) {
	type ref struct {
		Reference string `json:"reference"`
	}
	type entry struct {
		Item ref `json:"item"`
	}
	code, _ := s.m.KapCoding(indexCode)
	list := struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			Security []mappings.Coding `json:"security"`
		} `json:"meta"`
		Status string `json:"status"`
		Mode   string `json:"mode"`
		Title  string `json:"title"`
		Code   struct {
			Coding []mappings.Coding `json:"coding"`
		} `json:"code"`
		Subject ref     `json:"subject"`
		Entry   []entry `json:"entry,omitempty"`
	}{ResourceType: "List", ID: idx.id, Status: "current", Mode: "working", Title: "KAP records of the client", Subject: ref{"Patient/" + clientID}}
	list.Meta.Security = s.m.SecurityLabels(l)
	list.Code.Coding = []mappings.Coding{code}
	for _, r := range refs {
		list.Entry = append(list.Entry, entry{ref{r}})
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, fault.Wrap(err, "KAP index")
	}
	res, err := parse(mappings.Resource{Type: "List", ID: idx.id, JSON: b})
	if err != nil {
		return nil, err
	}
	op := &resource.Op{Method: "PUT", Type: "List", ID: idx.id, Resource: res}
	if idx.version != 0 {
		op.IfMatch = &idx.version
	} else {
		op.IfNoneMatch = true
	}
	return op, nil
}

// emptyIndex is the index a new client starts with.
func (s *Service) emptyIndex(clientID string) (*resource.Op, error) {
	id, ok := indexID(clientID)
	if !ok {
		return nil, nil
	}
	return s.indexWrite(&clientIndex{id: id}, clientID, nil, mappings.Labels{})
}
