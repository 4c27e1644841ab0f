package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Index holds the search index entries of a current version, written in
// the same document as the resource so the two cannot drift apart. Each
// entry is a string that starts with the search parameter's code, so one
// multikey index per field serves every parameter (MongoDB allows 64
// indexes per collection; R4 has some 1,400 parameters). Package search
// defines the entry formats.
type Index struct {
	Token  []string `bson:"tok,omitempty"`  // token keys
	Text   []string `bson:"txt,omitempty"`  // token :text, normalised
	String []string `bson:"str,omitempty"`  // string, normalised
	Exact  []string `bson:"strx,omitempty"` // string :exact
	Ref    []string `bson:"ref,omitempty"`  // reference
	URI    []string `bson:"uri,omitempty"`  // uri
	Has    []string `bson:"has,omitempty"`  // codes with at least one value (:missing)
	DateLo []string `bson:"dlo,omitempty"`  // date range starts, code|instant
	DateHi []string `bson:"dhi,omitempty"`  // date range ends, code|instant
	Num    []string `bson:"num,omitempty"`  // number and quantity values, family + sortable encoding
	NumLo  []string `bson:"nlo,omitempty"`  // number and quantity range (Range) starts, likewise
	NumHi  []string `bson:"nhi,omitempty"`  // number and quantity range (Range) ends, likewise
	// Both ends of one date range or Range in one entry, prefix|lo|hi, so
	// that a condition on both ends holds for one value (see Pair).
	DateRange []string `bson:"drg,omitempty"`
	NumRange  []string `bson:"nrg,omitempty"`
	// SortAsc and SortDesc hold, per parameter code with a value, the
	// lowest and the highest sort key of its values: _sort cannot sort
	// through an array, so ascending sorts by sa.<code> and descending by
	// sd.<code>, as FHIR asks for multi-valued elements. Not indexed.
	SortAsc  map[string]string `bson:"sa,omitempty"`
	SortDesc map[string]string `bson:"sd,omitempty"`
}

// indexFields are the bson names of Index, the only fields a Cond may name
// besides the resource's own type, id and lastUpdated.
var indexFields = map[string]bool{
	"tok": true, "txt": true, "str": true, "strx": true, "ref": true, "uri": true, "has": true, "dlo": true, "dhi": true,
	"num": true, "nlo": true, "nhi": true, "drg": true, "nrg": true,
	"rid": true, "ts": true,
	"type": true, // a per-type branch of a search over several types (Patient/1/$everything)
}

// Cond is one condition of a search. Exactly one form is set.
type Cond struct {
	Field string
	In    []string // an entry equals one of these
	NotIn []string // no entry equals any of these
	// Prefix: an entry starts with one of these (anchored, escaped: client
	// text never becomes a pattern).
	Prefix []string
	// Contains: an entry that starts with Contains has Substring somewhere
	// after that (both escaped).
	Contains, Substring string
	// Range: one entry e with Lo <= e < Hi (strings compare bytewise).
	Lo, Hi string
	// Pair: an entry with both ends in range (see Pair).
	Pair *Pair
	// Time range on ts: From <= ts < To (zero: open).
	From, To time.Time
	Or       []Cond // any of these
	And      []Cond // all of these
}

// Pair is the condition "an entry Prefix + a + "|" + b with First.Lo <= a <
// First.Hi and Second.Lo <= b < Second.Hi", for entries whose a and b hold
// no '|': both ends of one range tested together.
type Pair struct {
	Prefix        string
	First, Second Span
}

// Span is the range Lo <= s < Hi, bytewise.
type Span struct{ Lo, Hi string }

// Query is a compiled search on the current versions of one type, or of
// several (Types, with Type ""; none: nothing matches).
type Query struct {
	Type  string
	Types []string
	And   []Cond
	Sort  []Sort
	After []any // keyset cursor: the sort values of the last row seen
	Limit int
	// Tombstones includes deleted resources (an export reads the versions
	// current at an earlier time, which a later delete does not remove).
	Tombstones bool
}

// Sort is one sort key: "ts", "rid", "type" (the last tie-breaker across
// types: ids are unique per type only), or a parameter's sort key
// "sa.<code>" (ascending) or "sd.<code>" (descending).
type Sort struct {
	Field string
	Desc  bool
}

// SortField is the field of a sort by a parameter code: sa.<code> or
// sd.<code>. It reports false for a code that cannot be a field name.
func SortField(code string, desc bool) (string, bool) {
	if code == "" || strings.ContainsAny(code, ".$") {
		return "", false
	}
	if desc {
		return "sd." + code, true
	}
	return "sa." + code, true
}

// check refuses a sort field that SortField did not make.
func (s Sort) check() error {
	if s.Field == "rid" || s.Field == "ts" || s.Field == "type" {
		return nil
	}
	prefix, code, _ := strings.Cut(s.Field, ".")
	if f, ok := SortField(code, prefix == "sd"); !ok || f != s.Field {
		return fmt.Errorf("sort on unknown field %q", s.Field)
	}
	return nil
}

func (c Cond) filter() (bson.D, error) {
	if !indexFields[c.Field] && c.Or == nil && c.And == nil {
		return nil, fmt.Errorf("search on unknown field %q", c.Field)
	}
	switch {
	case c.And != nil:
		var and bson.A
		for _, a := range c.And {
			f, err := a.filter()
			if err != nil {
				return nil, err
			}
			and = append(and, f)
		}
		return bson.D{{Key: "$and", Value: and}}, nil
	case c.Or != nil:
		var or bson.A
		for _, o := range c.Or {
			f, err := o.filter()
			if err != nil {
				return nil, err
			}
			or = append(or, f)
		}
		return bson.D{{Key: "$or", Value: or}}, nil
	case c.In != nil:
		if len(c.In) == 1 {
			return bson.D{{Key: c.Field, Value: c.In[0]}}, nil
		}
		return bson.D{{Key: c.Field, Value: bson.D{{Key: "$in", Value: c.In}}}}, nil
	case c.NotIn != nil:
		return bson.D{{Key: c.Field, Value: bson.D{{Key: "$nin", Value: c.NotIn}}}}, nil
	case c.Prefix != nil:
		var or bson.A
		for _, p := range c.Prefix {
			or = append(or, bson.D{{Key: c.Field, Value: bson.Regex{Pattern: "^" + regexp.QuoteMeta(p)}}})
		}
		if len(or) == 1 {
			return or[0].(bson.D), nil
		}
		return bson.D{{Key: "$or", Value: or}}, nil
	case c.Pair != nil:
		// A pattern alone: a range on one entry cannot be said with
		// operators on FerretDB (see the default case). On MongoDB its
		// literal prefix bounds the index scan.
		pattern, ok := pairPattern(c.Pair)
		if !ok {
			return bson.D{{Key: c.Field, Value: bson.D{{Key: "$in", Value: bson.A{}}}}}, nil // nothing
		}
		return bson.D{{Key: c.Field, Value: bson.Regex{Pattern: pattern}}}, nil
	case c.Contains != "":
		return bson.D{{Key: c.Field, Value: bson.Regex{Pattern: "^" + regexp.QuoteMeta(c.Contains) + ".*" + regexp.QuoteMeta(c.Substring)}}}, nil
	case c.Field == "ts":
		r := bson.D{}
		if !c.From.IsZero() {
			r = append(r, bson.E{Key: "$gte", Value: c.From})
		}
		if !c.To.IsZero() {
			r = append(r, bson.E{Key: "$lt", Value: c.To})
		}
		return bson.D{{Key: "ts", Value: r}}, nil
	default:
		// $elemMatch with operators only: both bounds hold for one entry
		// (on MongoDB, which also bounds the index scan by it). FerretDB
		// 1.24 tests each operator against any entry, so the range is also
		// given as a pattern, which one entry must match.
		pattern, ok := rangePattern(c.Lo, c.Hi)
		if !ok {
			return bson.D{{Key: c.Field, Value: bson.D{{Key: "$in", Value: bson.A{}}}}}, nil // nothing
		}
		return bson.D{{Key: "$and", Value: bson.A{
			bson.D{{Key: c.Field, Value: bson.D{{Key: "$elemMatch", Value: bson.D{
				{Key: "$gte", Value: c.Lo}, {Key: "$lt", Value: c.Hi},
			}}}}},
			bson.D{{Key: c.Field, Value: bson.Regex{Pattern: pattern}}},
		}}}, nil
	}
}

func (q *Query) filter() (bson.D, error) {
	var typ any = q.Type
	if q.Type == "" {
		typ = bson.D{{Key: "$in", Value: append([]string{}, q.Types...)}} // never a null $in
	}
	f := bson.D{{Key: "type", Value: typ}}
	if !q.Tombstones {
		f = append(f, bson.E{Key: "deleted", Value: bson.D{{Key: "$ne", Value: true}}})
	}
	var and bson.A
	for _, c := range q.And {
		cf, err := c.filter()
		if err != nil {
			return nil, err
		}
		and = append(and, cf)
	}
	if after := q.keyset(); after != nil {
		and = append(and, after)
	}
	if len(and) > 0 {
		f = append(f, bson.E{Key: "$and", Value: and})
	}
	return f, nil
}

// keyset is the condition "after the cursor row" in sort order: for keys
// k1..kn, (k1 > a1) or (k1 = a1 and k2 > a2) or ...
//
// A parameter's sort key may be missing (nil in After); missing sorts
// before every value, as in MongoDB's sort. Comparison operators never
// match a missing field, so "after" is spelled out per direction: see
// after and equal.
func (q *Query) keyset() bson.D {
	if len(q.After) != len(q.Sort) || len(q.After) == 0 {
		return nil
	}
	var or bson.A
	for i, s := range q.Sort {
		term, ok := after(s, q.After[i])
		if !ok {
			continue // nothing sorts after a missing key in descending order
		}
		var and bson.A
		for j := 0; j < i; j++ {
			and = append(and, equal(q.Sort[j].Field, q.After[j]))
		}
		or = append(or, bson.D{{Key: "$and", Value: append(and, term)}})
	}
	if len(or) == 0 {
		return bson.D{{Key: "rid", Value: bson.D{{Key: "$in", Value: bson.A{}}}}} // nothing
	}
	return bson.D{{Key: "$or", Value: or}}
}

// equal matches the rows whose field equals v; {field: null} also matches
// a missing field.
func equal(field string, v any) bson.D {
	return bson.D{{Key: field, Value: v}}
}

// after matches the rows whose field sorts after v in s's direction, with
// missing lowest. It reports false when none can.
func after(s Sort, v any) (bson.D, bool) {
	switch {
	case v == nil && s.Desc:
		return nil, false
	case v == nil:
		return bson.D{{Key: s.Field, Value: bson.D{{Key: "$ne", Value: nil}}}}, true
	case s.Desc:
		return bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: s.Field, Value: bson.D{{Key: "$lt", Value: v}}}},
			bson.D{{Key: s.Field, Value: nil}},
		}}}, true
	}
	return bson.D{{Key: s.Field, Value: bson.D{{Key: "$gt", Value: v}}}}, true
}

// Search returns up to q.Limit matching current versions in sort order, and
// whether more follow.
func (s *Store) Search(ctx context.Context, q *Query) ([]*Record, bool, error) {
	f, opts, err := FindArgs(q)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.resources.Find(ctx, f, opts)
	if err != nil {
		return nil, false, storeErr(err, "search")
	}
	defer func() { _ = cur.Close(ctx) }()
	var out []*Record
	for cur.Next(ctx) {
		r := &Record{}
		if err := cur.Decode(r); err != nil {
			return nil, false, storeErr(err, "search")
		}
		r.Keys = sortValues(cur.Current, q.Sort)
		out = append(out, r)
	}
	if err := cur.Err(); err != nil {
		return nil, false, storeErr(err, "search")
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

// sortValues are the values of doc's sort keys, nil where missing.
func sortValues(doc bson.Raw, keys []Sort) []any {
	out := make([]any, len(keys))
	for i, k := range keys {
		v, err := doc.LookupErr(strings.Split(k.Field, ".")...)
		if err != nil {
			continue
		}
		if t, ok := v.TimeOK(); ok {
			out[i] = t.UTC()
		} else if str, ok := v.StringValueOK(); ok {
			out[i] = str
		}
	}
	return out
}

// FindArgs is the find command Search sends for q on the resources
// collection: one more row than the page, to tell whether more follow.
// Exported for the load tool, which sends it with the bare driver.
func FindArgs(q *Query) (bson.D, *options.FindOptionsBuilder, error) {
	f, err := q.filter()
	if err != nil {
		return nil, nil, err
	}
	sort := bson.D{}
	for _, k := range q.Sort {
		if err := k.check(); err != nil {
			return nil, nil, err
		}
		dir := 1
		if k.Desc {
			dir = -1
		}
		sort = append(sort, bson.E{Key: k.Field, Value: dir})
	}
	return f, options.Find().SetSort(sort).SetLimit(int64(q.Limit) + 1), nil
}

// Count returns how many current versions match q (ignoring its cursor).
func (s *Store) Count(ctx context.Context, q *Query) (int64, error) {
	qq := *q
	qq.After = nil
	f, err := qq.filter()
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.resources.CountDocuments(ctx, f)
	return n, storeErr(err, "count")
}
