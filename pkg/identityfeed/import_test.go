package identityfeed_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

var acme = source.Source{ID: "acme", HeapAppID: "app1", EmailProperty: "email"}

// memPublisher keeps what it is given, in order.
type memPublisher struct {
	mu      sync.Mutex
	recs    []*kgo.Record
	batches []int
	failAt  int // fail the batch with this 1-based number; 0: never
}

func (p *memPublisher) Publish(_ context.Context, recs ...*kgo.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failAt == len(p.batches)+1 {
		return errors.New("kafka: REQUEST_TIMED_OUT")
	}
	p.batches = append(p.batches, len(recs))
	p.recs = append(p.recs, recs...)
	return nil
}

// mappings decodes the published records: record key -> identity.
func (p *memPublisher) mappings(t *testing.T) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, r := range p.recs {
		m, err := identity.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		got[string(r.Key)] = m.Identity
	}
	return got
}

func TestImport(t *testing.T) {
	for _, c := range []struct {
		name     string
		csv      string
		want     map[string]string
		rows     int
		bad      []identityfeed.BadRow
		batches  []int
		batch    int
		wantFail bool
	}{
		{name: "no header", csv: "Alice-1,alice@example.com\nbob,Bob@Example.com\n", rows: 2,
			want: map[string]string{key("app1", "alice@example.com"): "Alice-1", key("app1", "bob@example.com"): "bob"}},
		{name: "header", csv: "identity,email\nAlice-1,alice@example.com\n", rows: 1,
			want: map[string]string{key("app1", "alice@example.com"): "Alice-1"}},
		{name: "header in the other order, spaced and capitalised, with a byte order mark and an extra column",
			csv: "\ufeff Email , Identity,plan\n  ALICE@example.COM  ,  Alice-1 ,pro\n", rows: 1,
			want: map[string]string{key("app1", "alice@example.com"): "Alice-1"}},
		{name: "CRLF and quoted fields", csv: "identity,email\r\n\"Smith, J\",\"j@example.com\"\r\n", rows: 1,
			want: map[string]string{key("app1", "j@example.com"): "Smith, J"}},
		{name: "bad rows are skipped and reported by line",
			csv: "identity,email\n" + // line 1
				"good,g@example.com\n" + // 2
				",e1@example.com\n" + // 3
				strings.Repeat("x", 256) + ",e2@example.com\n" + // 4
				"u3,\n" + // 5
				"u4,not-an-address\n" + // 6
				"u5,e5@example.com,extra\n" + // 7
				"u6\n" + // 8
				"u\"7,e7@example.com\n" + // 9: a bare quote
				"last,l@example.com\n", // 10
			rows: 9,
			want: map[string]string{key("app1", "g@example.com"): "good", key("app1", "l@example.com"): "last"},
			bad: []identityfeed.BadRow{
				{Line: 3, Reason: "identity is required"},
				{Line: 4, Reason: "identity longer than 255 characters"},
				{Line: 5, Reason: `"email" is empty`},
				{Line: 6, Reason: `"email" is not an email address`},
				{Line: 7, Reason: "3 fields, want 2"},
				{Line: 8, Reason: "1 fields, want 2"},
				{Line: 9, Reason: `not valid CSV: bare " in non-quoted-field`},
			}},
		{name: "batches", csv: "a,a@example.com\nb,b@example.com\nc,c@example.com\nd,d@example.com\ne,e@example.com\n", batch: 2, rows: 5,
			batches: []int{2, 2, 1},
			want: map[string]string{key("app1", "a@example.com"): "a", key("app1", "b@example.com"): "b", key("app1", "c@example.com"): "c",
				key("app1", "d@example.com"): "d", key("app1", "e@example.com"): "e"}},
		{name: "empty file", csv: "", want: map[string]string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pub := &memPublisher{}
			res, err := identityfeed.Import(context.Background(), strings.NewReader(c.csv), identityfeed.ImportConfig{
				Source: acme, Topic: "heap.identities", Publisher: pub, Batch: c.batch,
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, pub.mappings(t)); diff != "" {
				t.Errorf("mappings (-want +got):\n%s", diff)
			}
			wantRes := identityfeed.ImportResult{Rows: c.rows, Recorded: len(c.want), BadRows: len(c.bad), Bad: c.bad}
			if diff := cmp.Diff(wantRes, res); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if c.batches != nil {
				if diff := cmp.Diff(c.batches, pub.batches); diff != "" {
					t.Errorf("batches (-want +got):\n%s", diff)
				}
			}
			for _, r := range pub.recs {
				if r.Topic != "heap.identities" {
					t.Errorf("record for topic %q", r.Topic)
				}
			}
		})
	}
}

func TestImportDryRun(t *testing.T) {
	res, err := identityfeed.Import(context.Background(), strings.NewReader("a,a@example.com\n,b@example.com\n"),
		identityfeed.ImportConfig{Source: acme, Topic: "t", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := identityfeed.ImportResult{Rows: 2, Recorded: 1, BadRows: 1, Bad: []identityfeed.BadRow{{Line: 2, Reason: "identity is required"}}}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
}

func TestImportRefusals(t *testing.T) {
	ident := source.Source{ID: "ident", HeapAppID: "app3", EmailProperty: source.JoinIdentity}
	if _, err := identityfeed.Import(context.Background(), strings.NewReader("a,a@example.com\n"),
		identityfeed.ImportConfig{Source: ident, Topic: "t", Publisher: &memPublisher{}}); err == nil || !strings.Contains(err.Error(), "joins on identity") {
		t.Errorf("source joining on identity: %v, want a refusal", err)
	}
	if _, err := identityfeed.Import(context.Background(), strings.NewReader("a,a@example.com\n"),
		identityfeed.ImportConfig{Source: acme, Topic: "t"}); err == nil {
		t.Error("no publisher and no dry run: accepted")
	}
	pub := &memPublisher{failAt: 2}
	res, err := identityfeed.Import(context.Background(), strings.NewReader("a,a@example.com\nb,b@example.com\nc,c@example.com\n"),
		identityfeed.ImportConfig{Source: acme, Topic: "t", Publisher: pub, Batch: 2})
	if err == nil || !strings.Contains(err.Error(), "2 rows recorded") {
		t.Fatalf("failing second batch: %v, want an error saying 2 rows were recorded", err)
	}
	if res.Recorded != 2 {
		t.Errorf("recorded %d, want 2", res.Recorded)
	}
}

func TestImportBadRowsBounded(t *testing.T) {
	var b strings.Builder
	for range identityfeed.MaxReportedRows + 10 {
		b.WriteString(",x@example.com\n")
	}
	res, err := identityfeed.Import(context.Background(), strings.NewReader(b.String()),
		identityfeed.ImportConfig{Source: acme, Topic: "t", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.BadRows != identityfeed.MaxReportedRows+10 || len(res.Bad) != identityfeed.MaxReportedRows {
		t.Errorf("bad rows %d, reported %d; want %d and %d", res.BadRows, len(res.Bad), identityfeed.MaxReportedRows+10, identityfeed.MaxReportedRows)
	}
}

// The first load: 100,000 rows into Kafka, every one readable afterwards
// under its case-insensitive key with its identity's case intact.
func TestImport100k(t *testing.T) {
	testsupport.Integration(t, "imports 100k identities through kfake and Redis")
	const n = 100_000
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 3)
	// Uncompressed: compressing 100k records under the race detector would
	// dominate the test and prove nothing about the import.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)

	var b strings.Builder
	b.WriteString("email,identity\n")
	want := make(map[string]string, n)
	for i := range n {
		ident := fmt.Sprintf("User-%06d-AbC", i)
		lower := fmt.Sprintf("user%d@example.com", i)
		addr := lower
		if i%2 == 1 {
			addr = fmt.Sprintf("  User%d@Example.COM ", i) // same key as lower
		}
		fmt.Fprintf(&b, "%s,%s\n", addr, ident)
		want[key("app1", lower)] = ident
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := identityfeed.Import(ctx, strings.NewReader(b.String()), identityfeed.ImportConfig{
		Source: acme, Topic: topics.Identities, Publisher: kafka.Producer{Client: cl},
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(identityfeed.ImportResult{Rows: n, Recorded: n}, res); diff != "" {
		t.Fatalf("result (-want +got):\n%s", diff)
	}
	t.Logf("imported in %s", time.Since(start))
	start = time.Now()
	e := &env{topic: topics.Identities, brokers: brokers}
	got := e.table(t)
	t.Logf("read back in %s", time.Since(start))
	if len(got) != n {
		t.Fatalf("%d keys in heap.identities, want %d", len(got), n)
	}
	mismatched := 0
	for k, ident := range want {
		if got[k] != ident {
			if mismatched < 5 {
				t.Errorf("key %q: identity %q, want %q", k, got[k], ident)
			}
			mismatched++
		}
	}
	if mismatched > 0 {
		t.Errorf("%d of %d mappings wrong", mismatched, n)
	}
}
