// Package lag reads consumer-group lag per topic and partition, the number
// an operator (ctl lag) and an autoscaler (KEDA's Kafka scaler) act on.
package lag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Partition is one partition's committed offset, end offset and lag.
type Partition struct {
	Topic     string
	Partition int32
	Committed int64 // -1: nothing committed yet
	End       int64
	Lag       int64  // -1 when it could not be computed (Err says why)
	Member    string // the consuming member (its static instance id, else its host), empty when none
	Err       error
}

// Group is one consumer group's lag.
type Group struct {
	Name       string
	State      string // Stable, Empty, Dead (no such group), ...
	Members    int
	Partitions []Partition // sorted by topic, then partition
	Err        error       // the group could not be described or its offsets fetched
}

// Total is the group's lag summed over partitions whose lag is known.
func (g Group) Total() int64 {
	var n int64
	for _, p := range g.Partitions {
		if p.Lag > 0 {
			n += p.Lag
		}
	}
	return n
}

// Read returns the lag of groups, in the order asked. A per-group failure is
// in Group.Err; the error is for a request that failed as a whole.
func Read(ctx context.Context, adm *kadm.Client, groups ...string) ([]Group, error) {
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("lag: %w", err)
	}
	out := make([]Group, 0, len(groups))
	for _, name := range groups {
		l, ok := lags[name]
		if !ok {
			out = append(out, Group{Name: name, Err: fmt.Errorf("lag: group %s missing from the answer", name)})
			continue
		}
		g := Group{Name: name, State: l.State, Members: len(l.Members), Err: l.Error()}
		// Kafka 4 answers GROUP_ID_NOT_FOUND where older brokers said Dead:
		// a group with no members and no offsets is not an error here.
		if errors.Is(g.Err, kerr.GroupIDNotFound) {
			g.State, g.Err = "Dead", nil
		}
		for _, m := range l.Lag.Sorted() {
			p := Partition{Topic: m.Topic, Partition: m.Partition, Committed: m.Commit.At, End: m.End.Offset, Lag: m.Lag, Err: m.Err}
			if m.Member != nil {
				p.Member = member(m.Member)
			}
			g.Partitions = append(g.Partitions, p)
		}
		out = append(out, g)
	}
	return out, nil
}

// member names a member the way an operator finds it: the services' static
// instance id carries the pod name; dynamic members have only a host.
func member(m *kadm.DescribedGroupMember) string {
	if m.InstanceID != nil && *m.InstanceID != "" {
		return *m.InstanceID
	}
	return m.ClientID + "@" + m.ClientHost
}

// Write prints groups as a table, one row per partition and a total per group.
func Write(w io.Writer, groups []Group) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tTOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
	for _, g := range groups {
		if g.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\terror: %v\n", g.Name, g.State, g.Err)
			continue
		}
		if len(g.Partitions) == 0 {
			note := "(no committed offsets)"
			if g.State == "Dead" {
				note = "(no such group)"
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\n", g.Name, g.State, note)
			continue
		}
		for _, p := range g.Partitions {
			committed, lag := fmt.Sprint(p.Committed), fmt.Sprint(p.Lag)
			if p.Committed < 0 {
				committed = "-"
			}
			member := p.Member
			if p.Err != nil {
				lag, member = "?", "error: "+p.Err.Error()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", g.Name, g.State, p.Topic, p.Partition, committed, p.End, lag, member)
		}
		fmt.Fprintf(tw, "%s\t%s\t(total)\t\t\t\t%d\t%d members\n", g.Name, g.State, g.Total(), g.Members)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("lag: write: %w", err)
	}
	return nil
}
