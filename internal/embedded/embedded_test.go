package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A second process on the same data directory is refused until the first
// stops (flock locks are per open file, so a second Start in this process
// stands for it).
func TestStartLocksTheDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(dir, io.Discard); err == nil || !strings.Contains(err.Error(), "in use by another kapfhir process") {
		t.Fatalf("second Start on the same dir: %v, want in use", err)
	}
	s.Close()
	s, err = Start(dir, io.Discard)
	if err != nil {
		t.Fatalf("Start after Close: %v", err)
	}
	s.Close()
}

// IndexIDs gives each collection the index FerretDB's `{_id}` lookups use
// (SQLite's plan searches it instead of scanning), and the documents are
// still found and updated by _id.
func TestIndexIDs(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cl, err := mongo.Connect(options.Client().ApplyURI(s.URI()).SetMaxPoolSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(ctx)
	c := cl.Database("d").Collection("resources")
	if _, err := c.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "Patient/1"}}, bson.D{{Key: "_id", Value: "Patient/2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexIDs(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexIDs(ctx, "d"); err != nil {
		t.Fatalf("a second IndexIDs: %v", err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "d.sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var table string
	if err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = 'resources'`).Scan(&table); err != nil {
		t.Fatal(err)
	}
	var id, parent, unused int
	var plan string
	err = db.QueryRow(fmt.Sprintf(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), `"Patient/2"`).Scan(&id, &parent, &unused, &plan)
	if err != nil || !strings.Contains(plan, "USING INDEX "+table+"_kapfhir_id") {
		t.Errorf("the _id lookup's plan: %q, %v", plan, err)
	}
	if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "Patient/2"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	var got struct{ X int }
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "Patient/2"}}).Decode(&got); err != nil || got.X != 1 {
		t.Errorf("read by _id after the update: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "../d", "missing"} {
		if err := s.IndexIDs(ctx, bad); err == nil {
			t.Errorf("IndexIDs(%q): no error", bad)
		}
	}
}
