package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
)

// txnEntries is the number of Observations in one transaction Bundle of
// the transaction scenario (one operation).
const txnEntries = 100

// transactionBundle is operation i's transaction: txnEntries new
// Observations, each with a urn:uuid fullUrl.
func transactionBundle(i int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for j := range txnEntries {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:%s","resource":`, resource.NewID())
		b.Write(observation(i*txnEntries+j, false, "", "", time.Time{}))
		b.WriteString(`,"request":{"method":"POST","url":"Observation"}}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func (h *httpSide) transaction(ctx context.Context, i int) error {
	_, err := h.do(ctx, http.MethodPost, h.base, transactionBundle(i), http.StatusOK)
	return err
}

// transaction is the bulk insert of the same documents with the bare
// driver: the sequence numbers in one $inc, the versions in one insertMany
// into history, the current versions in one into resources (search entries
// computed as the service does).
func (r *rawSide) transaction(ctx context.Context, i int) error {
	cctx, cancel := r.op(ctx)
	var c struct {
		Seq int64 `bson:"seq"`
	}
	err := r.counters.FindOneAndUpdate(cctx, bson.D{{Key: "_id", Value: "changes"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "seq", Value: int64(txnEntries)}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&c)
	cancel()
	if err != nil {
		return fmt.Errorf("allocate sequence: %w", err)
	}
	versions := make([]any, 0, txnEntries)
	current := make([]any, 0, txnEntries)
	for j := range txnEntries {
		id := resource.NewID()
		rec, err := r.record(i*txnEntries+j, id, 1, "POST")
		if err != nil {
			return err
		}
		rec.Seq = c.Seq - txnEntries + 1 + int64(j)
		versions = append(versions, historyDoc{Key: store.Key(rec.Type, id) + "/_history/" + strconv.FormatInt(rec.VersionID, 10), Record: *rec})
		current = append(current, store.CurrentDocument(rec))
	}
	cctx, cancel = r.op(ctx)
	defer cancel()
	if _, err := r.history.InsertMany(cctx, versions); err != nil {
		return fmt.Errorf("insert versions: %w", err)
	}
	if _, err := r.resources.InsertMany(cctx, current); err != nil {
		return fmt.Errorf("insert current versions: %w", err)
	}
	return nil
}
