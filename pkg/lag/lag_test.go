package lag_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lag"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTopic creates topic with partitions and returns the client (with opts,
// closed when t ends) that created it and its admin client.
func newTopic(ctx context.Context, t *testing.T, brokers []string, topic string, partitions int32, opts ...kgo.Opt) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, partitions, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	return cl, adm
}

// A group that committed part of a topic: lag per partition is the end
// offset minus the commit, and a group that never existed shows no rows.
func TestLagPartOfTopicCommitted(t *testing.T) {
	t.Parallel()
	brokers, prefix := kafkatest.Brokers(t), kafkatest.Prefix(t)
	topic, group := prefix+"heap.events", prefix+"emitter"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cl, adm := newTopic(ctx, t, brokers, topic, 3, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// 10 records to partition 0, 4 to partition 1, none to partition 2.
	var recs []*kgo.Record
	for p, n := range map[int32]int{0: 10, 1: 4} {
		for range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The group consumed 7 of partition 0 and all of partition 1.
	offsets := kadm.Offsets{}
	offsets.AddOffset(topic, 0, 7, -1)
	offsets.AddOffset(topic, 1, 4, -1)
	if resp, err := adm.CommitOffsets(ctx, group, offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	got, err := lag.Read(ctx, adm, group, prefix+"never-existed")
	if err != nil {
		t.Fatal(err)
	}
	want := []lag.Group{
		{Name: group, State: "Empty", Partitions: []lag.Partition{
			{Topic: topic, Partition: 0, Committed: 7, End: 10, Lag: 3},
			{Topic: topic, Partition: 1, Committed: 4, End: 4, Lag: 0},
			// A partition the group never committed: its whole log is lag.
			{Topic: topic, Partition: 2, Committed: -1, End: 0, Lag: 0},
		}},
		{Name: prefix + "never-existed", State: "Dead"},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateErrors()); diff != "" {
		t.Fatalf("Read (-want +got):\n%s", diff)
	}
	if n := got[0].Total(); n != 3 {
		t.Errorf("Total = %d, want 3", n)
	}

	var out bytes.Buffer
	if err := lag.Write(&out, got); err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		rows[strings.Join(strings.Fields(line), " ")] = true
	}
	for _, row := range []string{
		group + " Empty " + topic + " 0 7 10 3",
		group + " Empty " + topic + " 2 - 0 0",
		group + " Empty (total) 3 0 members",
		prefix + "never-existed Dead - - - - - (no such group)",
	} {
		if !rows[row] {
			t.Errorf("table lacks row %q:\n%s", row, out.String())
		}
	}
}

// A live member shows under its static instance id, which carries the pod name.
func TestLagNamesLiveMembers(t *testing.T) {
	t.Parallel()
	brokers, prefix := kafkatest.Brokers(t), kafkatest.Prefix(t)
	topic, group := prefix+"mailchimp.raw", prefix+"mapper"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admCl, adm := newTopic(ctx, t, brokers, topic, 1)
	if err := admCl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.InstanceID("mapper-mapper-0"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if fs := consumer.PollFetches(ctx); fs.NumRecords() != 1 {
		t.Fatalf("consumed %d records, errors %v", fs.NumRecords(), fs.Errors())
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	var g lag.Group
	testsupport.WaitFor(t, "the group to show stable with its commit", 60*time.Second, func() bool {
		gs, err := lag.Read(ctx, adm, group)
		if err != nil {
			t.Fatal(err)
		}
		g = gs[0]
		return g.State == "Stable" && len(g.Partitions) == 1 && g.Partitions[0].Committed == 1
	})
	if p := g.Partitions[0]; p.Member != "mapper-mapper-0" || p.Lag != 0 || g.Members != 1 {
		t.Fatalf("partition %+v, members %d", p, g.Members)
	}
}
