package kap

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// The client index: List/<client>-kap (code kap#client-records) lists the
// client's resources of clientTypes, so that the rules read a client's
// records by id instead of by a search (on the embedded store a search
// decodes every stored resource: its cost grows with the whole clinic, a
// read by id does not). Each KAP write updates the index in its own unit
// with If-Match on the version it read, so concurrent writes cannot lose
// entries (one of them is a 409); every other write of the store (the FHIR
// API, bundles, import, the EHR pull) keeps it current through
// IndexKeeper, in the unit of the write.

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

// readIndex reads a client's index; nil when the client cannot have one
// (an id too long), version 0 when it has none (a client written through
// /fhir, or by a version without the index).
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
	idx, err := decodeIndex(rec)
	if err != nil {
		return nil, err
	}
	return idx, nil
}

// decodeIndex reads a stored index.
func decodeIndex(rec *store.Record) (*clientIndex, error) {
	var l indexJSON
	if err := json.Unmarshal([]byte(rec.Raw), &l); err != nil {
		return nil, fault.Wrap(err, "KAP index")
	}
	idx := &clientIndex{id: rec.ID, version: rec.VersionID}
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

// indexWrite is the op storing idx with refs: an update of the version
// read, or a create that fails if another request created it meanwhile.
func (s *Service) indexWrite(idx *clientIndex, clientID string, refs []string, l mappings.Labels) (*resource.Op, error) {
	res, err := indexResource(s.m, idx.id, clientID, refs, l)
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

// indexResource is the index List id of a client listing refs.
func indexResource(m *mappings.Mapper, id, clientID string, refs []string, l mappings.Labels) (*fhir.Resource, error) {
	type ref struct {
		Reference string `json:"reference"`
	}
	type entry struct {
		Item ref `json:"item"`
	}
	code, _ := m.KapCoding(mappings.ClientIndexCode)
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
	}{ResourceType: "List", ID: id, Status: "current", Mode: "working", Title: "KAP records of the client", Subject: ref{"Patient/" + clientID}}
	list.Meta.Security = m.SecurityLabels(l)
	list.Code.Coding = []mappings.Coding{code}
	for _, r := range refs {
		list.Entry = append(list.Entry, entry{ref{r}})
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, fault.Wrap(err, "KAP index")
	}
	return parse(mappings.Resource{Type: "List", ID: id, JSON: b})
}

// emptyIndex is the index a new client starts with.
func (s *Service) emptyIndex(clientID string) (*resource.Op, error) {
	id, ok := indexID(clientID)
	if !ok {
		return nil, nil
	}
	return s.indexWrite(&clientIndex{id: id}, clientID, nil, mappings.Labels{})
}

// IndexKeeper keeps the clients' indexes current on the writes that do
// not go through the KAP service (resource.Keeper): a version of
// clientTypes whose subject (Consent: patient) is a client with an index
// is added to that index, in the unit of the write; a delete, or a change
// of the subject, removes it from the index it was in. A client without an
// index gets none (its first KAP write lists its compartment), and a unit
// that writes an index itself (a KAP write) keeps it itself.
type IndexKeeper struct{ m *mappings.Mapper }

// NewIndexKeeper returns the keeper of the indexes the KAP service of m
// writes.
func NewIndexKeeper(m *mappings.Mapper) *IndexKeeper { return &IndexKeeper{m: m} }

// Keys are the index of the client c's version belongs to, and of the one
// its previous version belonged to.
func (k *IndexKeeper) Keys(c resource.Change) []string {
	var out []string
	for _, r := range []*store.Record{c.Prev, c.Next} {
		if key := indexKey(clientOf(r)); key != "" && !slices.Contains(out, key) {
			out = append(out, key)
		}
	}
	return out
}

// Keep returns the new versions of the stored indexes changes move
// entries in or out of.
func (k *IndexKeeper) Keep(changes []resource.Change, current map[string]*store.Record) ([]resource.Companion, error) {
	type edit struct{ add, remove []string }
	edits := map[string]*edit{}
	var order []string
	at := func(client string) *edit {
		key := indexKey(client)
		if edits[key] == nil {
			edits[key] = &edit{}
			order = append(order, key)
		}
		return edits[key]
	}
	for _, c := range changes {
		ref := store.Key(c.Next.Type, c.Next.ID)
		before, after := clientOf(c.Prev), clientOf(c.Next)
		if before != "" && before != after {
			e := at(before)
			e.remove = append(e.remove, ref)
		}
		if after != "" {
			e := at(after)
			e.add = append(e.add, ref)
		}
	}
	var out []resource.Companion
	for _, key := range order {
		cur := current[key]
		if key == "" || cur == nil || cur.Deleted {
			continue
		}
		idx, err := decodeIndex(cur)
		if err != nil {
			return nil, err
		}
		refs := slices.DeleteFunc(slices.Clone(idx.refs), func(r string) bool { return slices.Contains(edits[key].remove, r) })
		for _, r := range edits[key].add {
			if !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
		if slices.Equal(refs, idx.refs) {
			continue
		}
		client, _ := strings.CutSuffix(cur.ID, "-kap")
		res, err := indexResource(k.m, cur.ID, client, refs, idx.labels)
		if err != nil {
			return nil, err
		}
		out = append(out, resource.Companion{Prev: cur, Resource: res})
	}
	return out, nil
}

// indexKey is the store key of a client's index; "" for none.
func indexKey(clientID string) string {
	if clientID == "" {
		return ""
	}
	id, ok := indexID(clientID)
	if !ok {
		return ""
	}
	return store.Key("List", id)
}

// clientOf is the client a live version of clientTypes is about: the
// Patient its subject (Consent: patient) refers to; "" for none.
func clientOf(r *store.Record) string {
	if r == nil || r.Deleted || !slices.Contains(clientTypes, r.Type) {
		return ""
	}
	var v struct {
		Subject struct{ Reference string } `json:"subject"`
		Patient struct{ Reference string } `json:"patient"`
	}
	if json.Unmarshal([]byte(r.Raw), &v) != nil {
		return ""
	}
	ref := v.Subject.Reference
	if r.Type == "Consent" {
		ref = v.Patient.Reference
	}
	id, ok := strings.CutPrefix(ref, "Patient/")
	if !ok || !idRE.MatchString(id) {
		return ""
	}
	return id
}
