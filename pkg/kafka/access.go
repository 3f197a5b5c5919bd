package kafka

// Least privilege: the ACLs each service's principal needs, written once.
// `ctl acls` prints them as docs/CONNECTING.md's table and as kafka-acls
// commands, the tests grant exactly these to the principal the services run
// as, and Preflight checks them at start-up and in /readyz, so the three
// cannot drift apart. No service needs CREATE: topics come from
// `ctl topics apply` (deploy/topics.yaml), whose principal is the "topics" role.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Resource types of an ACL, as kafka-acls names them.
const (
	ResTopic   = "topic"
	ResGroup   = "group"
	ResTxnID   = "transactional-id"
	ResCluster = "cluster"
)

// Operations, as kafka-acls names them.
const (
	OpRead           = "Read"
	OpWrite          = "Write"
	OpDescribe       = "Describe"
	OpCreate         = "Create"
	OpAlter          = "Alter"
	OpDescribeConfig = "DescribeConfigs"
	OpAlterConfigs   = "AlterConfigs"
	OpIdempotent     = "IdempotentWrite"
)

// Access is one ACL a role needs: operations on a resource, by literal
// name or by prefix. Probe is the concrete name Preflight checks for a
// prefixed resource (this instance's transactional id).
type Access struct {
	Resource string
	Name     string
	Prefixed bool
	Ops      []string
	Why      string
	Probe    string
}

// Roles are the principals the ACL table lists.
var Roles = []string{"ingress", "mapper", "emitter", "topics"}

// Needs lists what role needs with topics t, names prefixed by prefix, on
// this instance (instance may be empty when only the table is wanted).
func Needs(role string, t Topics, prefix, instance string) ([]Access, error) {
	topic := func(name string, why string, ops ...string) Access {
		return Access{Resource: ResTopic, Name: name, Ops: ops, Why: why}
	}
	group := func(name, why string) Access {
		return Access{Resource: ResGroup, Name: prefix + name, Ops: []string{OpRead}, Why: why}
	}
	txn := func(name, why string) Access {
		return Access{Resource: ResTxnID, Name: prefix + name + "-", Prefixed: true, Ops: []string{OpWrite, OpDescribe},
			Why: why, Probe: prefix + name + "-" + instance}
	}
	idem := Access{Resource: ResCluster, Name: "kafka-cluster", Ops: []string{OpIdempotent},
		Why: "idempotent producer (implied by Write on a topic since Kafka 3.0)"}
	switch role {
	case "ingress":
		return []Access{
			topic(t.Raw, "webhooks and polled reports", OpWrite, OpDescribe),
			topic(t.RawDLQ, "events too large to be a record", OpWrite, OpDescribe),
			topic(t.Identities, "identity feed", OpWrite, OpDescribe),
			topic(t.Cursors, "poller progress (read back at start)", OpRead, OpWrite, OpDescribe),
			topic(t.Tokens, "OAuth tokens (encrypted; read back at start)", OpRead, OpWrite, OpDescribe),
			txn("poller", "the poller's transactions (one id per instance)"),
			txn("backfill", "ctl backfill, run with ingress's credentials"),
			idem,
		}, nil
	case "mapper":
		return []Access{
			topic(t.Raw, "mapper input", OpRead, OpDescribe),
			topic(t.Events, "mapped events; released pending events", OpWrite, OpDescribe),
			topic(t.RawDLQ, "payloads that cannot be mapped", OpWrite, OpDescribe),
			topic(t.Pending, "events waiting for an identity", OpRead, OpWrite, OpDescribe),
			topic(t.Identities, "identity cache source; address changes", OpRead, OpWrite, OpDescribe),
			topic(t.Campaigns, "campaign metadata", OpRead, OpWrite, OpDescribe),
			topic(t.EventsDLQ, "pending events that expire", OpWrite, OpDescribe),
			group("mapper", "mapper consumer group"),
			group("materializer", "materializer consumer group"),
			txn("mapper", "mapper transactions (one id per session)"),
			txn("materializer", "materializer transactions"),
			idem,
		}, nil
	case "emitter":
		return []Access{
			topic(t.Events, "emitter input", OpRead, OpDescribe),
			topic(t.EventsDLQ, "events Heap refuses", OpWrite, OpDescribe),
			group("emitter", "emitter consumer group"),
			idem,
		}, nil
	case "topics":
		name, prefixed := prefix, true
		if prefix == "" {
			name, prefixed = "*", false // every topic: Kafka has no empty prefix
		}
		return []Access{{Resource: ResTopic, Name: name, Prefixed: prefixed,
			Ops: []string{OpCreate, OpAlter, OpDescribe, OpDescribeConfig, OpAlterConfigs},
			Why: "ctl topics apply (deploy/topics.yaml): the topics Job only"}}, nil
	}
	return nil, fmt.Errorf("kafka: unknown role %q (want one of %s)", role, strings.Join(Roles, ", "))
}

// ACLBuilder returns a's ACL for principal (User:name) as kadm would create it.
func (a Access) ACLBuilder(principal string) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow(principal).AllowHosts().Operations(aclOps(a.Ops)...)
	if a.Prefixed {
		b = b.ResourcePatternType(kadm.ACLPatternPrefixed)
	} else {
		b = b.ResourcePatternType(kadm.ACLPatternLiteral)
	}
	switch a.Resource {
	case ResTopic:
		b = b.Topics(a.Name)
	case ResGroup:
		b = b.Groups(a.Name)
	case ResTxnID:
		b = b.TransactionalIDs(a.Name)
	case ResCluster:
		b = b.Clusters()
	}
	return b
}

// Command is the kafka-acls command that grants a to principal.
func (a Access) Command(principal string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kafka-acls --bootstrap-server $BOOTSTRAP --command-config admin.properties --add --allow-principal %s", principal)
	for _, op := range a.Ops {
		fmt.Fprintf(&b, " --operation %s", op)
	}
	switch a.Resource {
	case ResCluster:
		b.WriteString(" --cluster")
	default:
		name := a.Name
		if name == "*" {
			name = "'*'"
		}
		fmt.Fprintf(&b, " --%s %s", a.Resource, name)
	}
	if a.Prefixed {
		b.WriteString(" --resource-pattern-type prefixed")
	}
	return b.String()
}

var opCodes = map[string]kmsg.ACLOperation{
	OpRead: kmsg.ACLOperationRead, OpWrite: kmsg.ACLOperationWrite, OpDescribe: kmsg.ACLOperationDescribe,
	OpCreate: kmsg.ACLOperationCreate, OpAlter: kmsg.ACLOperationAlter, OpDescribeConfig: kmsg.ACLOperationDescribeConfigs,
	OpAlterConfigs: kmsg.ACLOperationAlterConfigs, OpIdempotent: kmsg.ACLOperationIdempotentWrite,
}

func aclOps(ops []string) []kadm.ACLOperation {
	out := make([]kadm.ACLOperation, 0, len(ops))
	for _, op := range ops {
		out = append(out, opCodes[op])
	}
	return out
}

// Grant creates needs' ACLs for principal through adm (whose principal
// may alter ACLs): `ctl acls apply` and the tests.
func Grant(ctx context.Context, adm *kadm.Client, principal string, needs []Access) error {
	for _, a := range needs {
		res, err := adm.CreateACLs(ctx, a.ACLBuilder(principal))
		if err != nil {
			return fmt.Errorf("kafka: grant %s %s: %w", a.Resource, a.Name, Explain(err))
		}
		for _, r := range res {
			if r.Err != nil {
				return fmt.Errorf("kafka: grant %s %s: %w", a.Resource, a.Name, r.Err)
			}
		}
	}
	return nil
}

// ErrNotAuthorized is wrapped by Preflight's errors for a missing ACL.
var ErrNotAuthorized = errors.New("not authorized")

// ErrTopicMissing is wrapped by Preflight's error for a topic that does not exist.
var ErrTopicMissing = errors.New("topic does not exist")

// Preflight checks, through cl, that the brokers answer and accept this
// client's credentials and that its principal holds needs; it returns
// each needed topic's partition count. Its errors are one line naming the
// cause: authentication failed, certificate not trusted, not authorized
// for an operation on a resource, or a missing topic.
func Preflight(ctx context.Context, cl *kgo.Client, needs []Access) (map[string]int, error) {
	var topics []string
	for _, a := range needs {
		if a.Resource == ResTopic && !a.Prefixed && a.Name != "*" {
			topics = append(topics, a.Name)
		}
	}
	parts := map[string]int{}
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	if len(topics) == 0 {
		req.Topics = []kmsg.MetadataRequestTopic{} // no topics, not all
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, Explain(err)
	}
	byName := map[string]kmsg.MetadataResponseTopic{}
	for _, t := range resp.Topics {
		if t.Topic != nil {
			byName[*t.Topic] = t
		}
	}
	var errs []error
	for _, a := range needs {
		switch a.Resource {
		case ResTopic:
			if a.Prefixed || a.Name == "*" {
				continue // the topics Job's create rights: checked by creating
			}
			t := byName[a.Name]
			switch err := kerr.ErrorForCode(t.ErrorCode); {
			case errors.Is(err, kerr.TopicAuthorizationFailed):
				errs = append(errs, fmt.Errorf("kafka: %w for %s on topic %s (grant the ACLs in docs/CONNECTING.md)", ErrNotAuthorized, strings.Join(a.Ops, ", "), a.Name))
				continue
			case errors.Is(err, kerr.UnknownTopicOrPartition):
				errs = append(errs, fmt.Errorf("kafka: %w: %s (create it with `ctl topics apply`)", ErrTopicMissing, a.Name))
				continue
			case err != nil:
				errs = append(errs, fmt.Errorf("kafka: topic %s: %w", a.Name, err))
				continue
			}
			parts[a.Name] = len(t.Partitions)
			if missing := missingOps(t.AuthorizedOperations, a.Ops); len(missing) > 0 {
				errs = append(errs, fmt.Errorf("kafka: %w for %s on topic %s (grant the ACLs in docs/CONNECTING.md)", ErrNotAuthorized, strings.Join(missing, ", "), a.Name))
			}
		case ResGroup:
			if err := checkGroup(ctx, cl, a); err != nil {
				errs = append(errs, err)
			}
		case ResTxnID:
			if err := checkTxnID(ctx, cl, a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return parts, joinLine(errs)
}

// lineErrors is errors.Join on one line: a start-up failure reads as one
// line of the log, however many ACLs are missing.
type lineErrors []error

func (e lineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e lineErrors) Unwrap() []error { return e }

func joinLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return lineErrors(errs)
}

// missingOps lists ops that bitfield (a Metadata or DescribeGroups
// authorized-operations field) does not grant; none when the broker did
// not report them.
func missingOps(bitfield int32, ops []string) []string {
	if bitfield == math.MinInt32 {
		return nil
	}
	have := kadm.DecodeACLOperations(bitfield)
	var missing []string
	for _, op := range ops {
		code := opCodes[op]
		if slices.Contains(have, code) || (code == kmsg.ACLOperationDescribe && (slices.Contains(have, kmsg.ACLOperationRead) || slices.Contains(have, kmsg.ACLOperationWrite))) {
			continue
		}
		missing = append(missing, op)
	}
	return missing
}

// untilSettled calls fn again while it fails with a retriable error (a
// coordinator still loading after a broker start), until ctx ends.
func untilSettled(ctx context.Context, fn func() error) error {
	return retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}, func() error {
		err := fn()
		if err != nil && !kerr.IsRetriable(err) {
			return retry.Permanent(err)
		}
		return err
	})
}

func checkGroup(ctx context.Context, cl *kgo.Client, a Access) error {
	var described kadm.DescribedGroups
	err := untilSettled(ctx, func() error {
		d, err := kadm.NewClient(cl).DescribeGroups(ctx, a.Name)
		if err == nil {
			if g, ok := d[a.Name]; ok && g.Err != nil {
				err = g.Err
			}
		}
		described = d
		return err
	})
	if err == nil {
		if g, ok := described[a.Name]; ok {
			err = g.Err
			if err == nil {
				var bits int32
				for _, op := range g.AuthorizedOperations {
					bits |= 1 << op
				}
				if missing := missingOps(bits, a.Ops); len(missing) > 0 && len(g.AuthorizedOperations) > 0 {
					return fmt.Errorf("kafka: %w for %s on group %s (grant the ACLs in docs/CONNECTING.md)", ErrNotAuthorized, strings.Join(missing, ", "), a.Name)
				}
			}
		}
	}
	if errors.Is(err, kerr.GroupAuthorizationFailed) {
		return fmt.Errorf("kafka: %w for %s on group %s (grant the ACLs in docs/CONNECTING.md)", ErrNotAuthorized, strings.Join(a.Ops, ", "), a.Name)
	}
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("kafka: group %s: %w", a.Name, Explain(err))
	}
	return nil
}

func checkTxnID(ctx context.Context, cl *kgo.Client, a Access) error {
	if a.Probe == "" {
		return nil
	}
	err := untilSettled(ctx, func() error {
		described, err := kadm.NewClient(cl).DescribeTransactions(ctx, a.Probe)
		if err == nil {
			if d, ok := described[a.Probe]; ok {
				err = d.Err
			}
		}
		return err
	})
	switch {
	case err == nil, errors.Is(err, kerr.TransactionalIDNotFound):
		return nil
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("kafka: %w for %s on transactional-id %s (prefixed ACL %s; see docs/CONNECTING.md)", ErrNotAuthorized, strings.Join(a.Ops, ", "), a.Probe, a.Name)
	}
	return fmt.Errorf("kafka: transactional-id %s: %w", a.Probe, Explain(err))
}
