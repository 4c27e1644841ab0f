package store

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CrashAfterHistory commits r the way a writer that died half-way would:
// history written, current projection not.
func CrashAfterHistory(t *testing.T, s *Store, r *Record) {
	t.Helper()
	seq, err := s.nextSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Seq = seq
	if _, err := s.history.InsertOne(context.Background(), historyDoc(r)); err != nil {
		t.Fatal(err)
	}
}

// BurnSeq allocates a sequence number and never uses it.
func BurnSeq(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.nextSeq(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// FindIDs runs a raw find on resources and returns the rids in order.
func FindIDs(t *testing.T, s *Store, filter, sort bson.D) []string {
	t.Helper()
	cur, err := s.resources.Find(context.Background(), filter, options.Find().SetSort(sort))
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	if err := cur.All(context.Background(), &recs); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids
}
