package store

import (
	"context"
	"testing"
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
