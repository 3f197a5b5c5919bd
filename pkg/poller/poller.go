// Package poller polls Mailchimp's Reports API, the only source of opens and
// clicks of marketing campaigns: it discovers sent campaigns, pages through
// each campaign's email-activity from its cursor minus an overlap, and
// publishes campaign objects and member items raw to mailchimp.raw. Each
// page's records and the advanced cursor commit in one Kafka transaction, so
// a crash neither skips nor double-publishes a page.
package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

// Campaign types polled; variate (multivariate) and automation emails are
// not exposed by the API and are reported as skipped (Heap's limitation too).
var polledTypes = []string{"regular", "plaintext", "absplit", "rss"}

// Owner grants a source to one instance at a time.
type Owner interface {
	// Own acquires or renews source for ttl; false when another instance holds it.
	Own(ctx context.Context, source string, ttl time.Duration) (bool, error)
}

// States records what a user should see of a source: reconnect needed,
// skipped campaigns.
type States interface {
	SetState(ctx context.Context, source, state, reason string) error
	Skipped(ctx context.Context, source, campaignID, reason string) error
}

// Tokens returns a source's OAuth token, when it was connected that way.
type Tokens interface {
	Get(ctx context.Context, source string) (tokens.Token, bool, error)
}

// Config is what the poller needs.
type Config struct {
	Brokers       []string
	Topics        kafka.Topics
	TransactionID string // stable per instance
	Sources       *source.Sources
	HTTP          *http.Client
	Owner         Owner
	States        States
	Tokens        Tokens // nil: API keys only
	Metrics       *metrics.Pipeline
	Log           *zap.Logger
	Overlap       time.Duration // re-read before the cursor; default 10m
	PageSize      int           // default 1000 (Mailchimp's maximum)
	MaxBackoff    time.Duration // default 60s
	ClientOpts    []kgo.Opt
	Now           func() time.Time
}

// Cursor is a campaign's polling progress, the value of mailchimp.cursors.
type Cursor struct {
	// Since: the next pass asks for activity since Since minus the overlap.
	Since time.Time `json:"since"`
	// A pass in progress: its since, its start, and the next offset.
	PassSince  time.Time `json:"pass_since"`
	PassStart  time.Time `json:"pass_start"`
	NextOffset int       `json:"next_offset,omitempty"`
	// Stopped says why a campaign is no longer polled (404).
	Stopped string `json:"stopped,omitempty"`
}

// Run polls every source that has Mailchimp credentials until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	var polled []source.Source
	for _, s := range cfg.Sources.All() {
		if s.Polls() {
			polled = append(polled, s)
		}
	}
	if len(polled) == 0 {
		<-ctx.Done()
		return nil
	}
	p, err := New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	var wg sync.WaitGroup
	for _, s := range polled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(ctx, s)
		}()
	}
	wg.Wait()
	return nil
}

// New returns a poller; Pass polls one source once. Close it when done.
func New(cfg Config) (*Poller, error) {
	if cfg.Overlap <= 0 {
		cfg.Overlap = 10 * time.Minute
	}
	if cfg.PageSize <= 0 || cfg.PageSize > mailchimp.MaxCount {
		cfg.PageSize = mailchimp.MaxCount
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cl, err := kgo.NewClient(append(slices.Clone(cfg.ClientOpts),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.TransactionalID(cfg.TransactionID),
		kgo.TransactionTimeout(60*time.Second),
	)...)
	if err != nil {
		return nil, fmt.Errorf("poller: kafka: %w", err)
	}
	return &Poller{cfg: cfg, cl: cl, cursors: map[string]Cursor{}, sems: map[string]*semaphore.Weighted{}}, nil
}

// Close releases the Kafka client.
func (p *Poller) Close() { p.cl.Close() }

// Cursor returns a campaign's cursor as this poller last saw it.
func (p *Poller) Cursor(source, campaign string) Cursor {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cursors[cursorKey(source, campaign)]
}

// Poller is the state of a running poller.
type Poller struct {
	cfg     Config
	cl      *kgo.Client
	txMu    sync.Mutex // one transaction at a time per producer
	mu      sync.Mutex
	cursors map[string]Cursor
	sems    map[string]*semaphore.Weighted // per account
}

func (p *Poller) loop(ctx context.Context, src source.Source) {
	for {
		ttl := 2*src.PollInterval + time.Minute
		owned, err := p.cfg.Owner.Own(ctx, src.ID, ttl)
		switch {
		case err != nil:
			p.cfg.Log.Warn("poller: ownership check failed", zap.String("source", src.ID), zap.Error(err))
		case !owned:
			p.cfg.Log.Debug("poller: another instance owns the source", zap.String("source", src.ID))
		default:
			if err := p.Pass(ctx, src); err != nil && ctx.Err() == nil {
				p.cfg.Log.Warn("poller: pass failed", zap.String("source", src.ID), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(src.PollInterval):
		}
	}
}

func (p *Poller) semaphore(account string) *semaphore.Weighted {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sems[account]
	if s == nil {
		s = semaphore.NewWeighted(mailchimp.MaxConcurrent)
		p.sems[account] = s
	}
	return s
}

// Pass discovers src's campaigns and polls each one's activity once.
func (p *Poller) Pass(ctx context.Context, src source.Source) error {
	client, sem, ok, err := p.client(ctx, src)
	if err != nil || !ok {
		return err
	}
	since := p.cfg.Now().Add(-src.ActivityWindow)
	if !src.BackfillSince.IsZero() && src.BackfillSince.Before(since) {
		since = src.BackfillSince
	}
	var raws []json.RawMessage
	var camps []mailchimp.Campaign
	for offset := 0; ; {
		var page mailchimp.CampaignPage
		err := p.call(ctx, sem, src, func() (err error) {
			page, err = client.Campaigns(ctx, since, offset, p.cfg.PageSize)
			return err
		})
		if err != nil {
			return err
		}
		for _, raw := range page.Campaigns {
			c, err := mailchimp.ParseCampaign(raw)
			if err != nil {
				return fmt.Errorf("poller: %w", err)
			}
			raws, camps = append(raws, raw), append(camps, c)
		}
		offset += len(page.Campaigns)
		if len(page.Campaigns) == 0 || offset >= page.TotalItems {
			break
		}
	}
	// Campaign objects first: the mapper learns titles before the activity.
	if err := p.publish(ctx, src, mailchimp.KindCampaign, raws, func(i int) string { return camps[i].PartitionKey() }, nil); err != nil {
		return err
	}
	g := sync.WaitGroup{}
	errs := make(chan error, len(camps))
	for _, c := range camps {
		if !slices.Contains(polledTypes, c.Type) {
			reason := fmt.Sprintf("%s campaigns are not exposed by Mailchimp's Reports API", c.Type)
			if err := p.cfg.States.Skipped(ctx, src.ID, c.ID, reason); err != nil {
				p.cfg.Log.Warn("poller: record skipped campaign", zap.Error(err))
			}
			continue
		}
		if c.Status != "sent" {
			continue
		}
		g.Add(1)
		go func() {
			defer g.Done()
			if err := p.pollCampaign(ctx, sem, client, src, c.ID); err != nil {
				errs <- err
			}
		}()
	}
	g.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// client prepares a pass over src: its API client, its account's connection
// limit, and the latest cursors. ok is false while an OAuth source waits for
// its connection.
func (p *Poller) client(ctx context.Context, src source.Source) (*mailchimp.Client, *semaphore.Weighted, bool, error) {
	cred, ok, err := p.credentials(ctx, src)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	client, err := mailchimp.NewClient(cred, p.cfg.HTTP)
	if err != nil {
		return nil, nil, false, err
	}
	if err := p.loadCursors(ctx); err != nil {
		return nil, nil, false, err
	}
	return client, p.semaphore(cred.Account()), true, nil
}

// credentials are the source's API key, or its OAuth token; ok is false
// while an OAuth source waits for its connection.
func (p *Poller) credentials(ctx context.Context, src source.Source) (mailchimp.Credentials, bool, error) {
	if src.MailchimpAPIKey != "" {
		return mailchimp.Credentials{APIKey: src.MailchimpAPIKey, APIURL: src.MailchimpAPIURL}, true, nil
	}
	if p.cfg.Tokens == nil {
		return mailchimp.Credentials{}, false, nil
	}
	tok, ok, err := p.cfg.Tokens.Get(ctx, src.ID)
	if err != nil || !ok {
		return mailchimp.Credentials{}, false, err
	}
	apiURL := src.MailchimpAPIURL // the explicit override (tests, proxies)
	if apiURL == "" {
		// The token goes only to a Mailchimp data centre, whatever its
		// metadata said when it was stored.
		if apiURL, err = tok.APIURL(); err != nil {
			reason := "the stored token's API endpoint is not Mailchimp's: connect Mailchimp again"
			if serr := p.cfg.States.SetState(ctx, src.ID, "reconnect_needed", reason); serr != nil {
				p.cfg.Log.Warn("poller: record source state", zap.Error(serr))
			}
			return mailchimp.Credentials{}, false, fmt.Errorf("poller: source %s: token not sent: %w", src.ID, err)
		}
	}
	return mailchimp.Credentials{Token: tok.AccessToken, DC: tok.DC, APIURL: apiURL}, true, nil
}

func cursorKey(source, campaign string) string { return source + "/" + campaign }

// pollCampaign pages through one campaign's activity from its cursor.
func (p *Poller) pollCampaign(ctx context.Context, sem *semaphore.Weighted, client *mailchimp.Client, src source.Source, campaign string) error {
	key := cursorKey(src.ID, campaign)
	p.mu.Lock()
	cur := p.cursors[key]
	p.mu.Unlock()
	if cur.Stopped != "" {
		return nil
	}
	passSince, passStart, offset := time.Time{}, p.cfg.Now().UTC(), 0
	if !cur.Since.IsZero() {
		passSince = cur.Since.Add(-p.cfg.Overlap)
	}
	if cur.NextOffset > 0 {
		passSince, passStart, offset = cur.PassSince, cur.PassStart, cur.NextOffset
	}
	for {
		var page mailchimp.ActivityPage
		err := p.call(ctx, sem, src, func() (err error) {
			page, err = client.EmailActivity(ctx, campaign, passSince, offset, p.cfg.PageSize)
			return err
		})
		if errors.Is(err, mailchimp.ErrNotFound) {
			next := cur
			next.Stopped = "campaign not found (404): no longer polled"
			p.cfg.Log.Info("poller: campaign gone; stop polling it", zap.String("source", src.ID), zap.String("campaign", campaign))
			return p.publish(ctx, src, "", nil, nil, &cursorUpdate{key, next})
		}
		if err != nil {
			return err
		}
		next := offset + len(page.Emails)
		done := len(page.Emails) == 0 || next >= page.TotalItems
		nc := Cursor{Since: cur.Since, PassSince: passSince, PassStart: passStart, NextOffset: next}
		if done {
			nc = Cursor{Since: passStart}
		}
		keyOf := func(int) string { return "c:" + campaign }
		if err := p.publish(ctx, src, mailchimp.KindEmailActivity, page.Emails, keyOf, &cursorUpdate{key, nc}); err != nil {
			return err
		}
		if done {
			return nil
		}
		offset = next
	}
}

type cursorUpdate struct {
	key string
	cur Cursor
}

// publish writes units (and the cursor, when set) in one transaction.
func (p *Poller) publish(ctx context.Context, src source.Source, kind string, units []json.RawMessage, key func(int) string, cu *cursorUpdate) error {
	if len(units) == 0 && cu == nil {
		return nil
	}
	now := p.cfg.Now().UTC().Format(time.RFC3339Nano)
	var recs []*kgo.Record
	for i, u := range units {
		recs = append(recs, &kgo.Record{Topic: p.cfg.Topics.Raw, Key: []byte(src.ID + "/" + key(i)), Value: u, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(src.ID)},
			{Key: kafka.HeaderKind, Value: []byte(kind)},
			{Key: kafka.HeaderReceivedAt, Value: []byte(now)},
			{Key: kafka.HeaderRequestID, Value: []byte("poll")},
		}})
	}
	if cu != nil {
		v, err := json.Marshal(cu.cur)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: p.cfg.Topics.Cursors, Key: []byte(cu.key), Value: v})
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if err := p.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("poller: begin: %w", err)
	}
	err := p.cl.ProduceSync(ctx, recs...).FirstErr()
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err == nil {
		err = p.cl.Flush(endCtx)
	}
	if endErr := p.cl.EndTransaction(endCtx, kgo.TransactionEndTry(err == nil)); endErr != nil && err == nil {
		err = endErr
	}
	if err != nil {
		return fmt.Errorf("poller: publish %s: %w", kind, err)
	}
	if cu != nil {
		p.mu.Lock()
		p.cursors[cu.key] = cu.cur
		p.mu.Unlock()
	}
	return nil
}

// call runs one API call under the account's connection limit, backing off
// on 429, 403 without a body, 5xx and timeouts. A refused key marks the
// source "reconnect needed".
func (p *Poller) call(ctx context.Context, sem *semaphore.Weighted, src source.Source, fn func() error) error {
	policy := retry.Policy{Initial: 500 * time.Millisecond, Max: p.cfg.MaxBackoff, After: mailchimp.RetryAfter,
		Notify: func(err error, wait time.Duration) {
			p.cfg.Log.Info("poller: Mailchimp asked to slow down; retrying", zap.String("source", src.ID), zap.Duration("in", wait), zap.Error(err))
		}}
	return retry.Do(ctx, policy, func() error {
		if err := sem.Acquire(ctx, 1); err != nil {
			return retry.Permanent(err)
		}
		err := fn()
		sem.Release(1)
		outcome := "ok"
		switch {
		case errors.Is(err, mailchimp.ErrNotFound):
			outcome = "not_found"
		case errors.Is(err, mailchimp.ErrUnauthorized):
			outcome = "refused"
		case mailchimp.Retryable(err):
			outcome = "retryable"
		case err != nil:
			outcome = "error"
		}
		p.cfg.Metrics.Inc(metrics.PollerRequests, src.ID, outcome)
		switch {
		case errors.Is(err, mailchimp.ErrUnauthorized):
			if serr := p.cfg.States.SetState(ctx, src.ID, "reconnect_needed", err.Error()); serr != nil {
				p.cfg.Log.Warn("poller: record source state", zap.Error(serr))
			}
			return retry.Permanent(err)
		case err != nil && !mailchimp.Retryable(err):
			return retry.Permanent(err)
		}
		return err
	})
}

// loadCursors reads mailchimp.cursors to its end: another instance may have
// polled the source before this one took it over.
func (p *Poller) loadCursors(ctx context.Context) error {
	table, err := kafka.ReadTable(ctx, append(slices.Clone(p.cfg.ClientOpts), kgo.SeedBrokers(p.cfg.Brokers...)), p.cfg.Topics.Cursors)
	if err != nil {
		return fmt.Errorf("poller: cursors: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range table {
		var c Cursor
		if json.Unmarshal(v, &c) == nil {
			p.cursors[k] = c
		}
	}
	return nil
}

// Backfill re-reads history for src: with campaign set, that campaign's
// whole activity (its cursor reset); with since set, every campaign sent
// since then. Events keep their original timestamps; deterministic event ids,
// the delivery ledger and Heap's idempotency key keep what was already
// delivered from doubling.
func (p *Poller) Backfill(ctx context.Context, src source.Source, since time.Time, campaign string) error {
	if campaign == "" {
		if !since.IsZero() && (src.BackfillSince.IsZero() || since.Before(src.BackfillSince)) {
			src.BackfillSince = since
		}
		return p.Pass(ctx, src)
	}
	client, sem, ok, err := p.client(ctx, src)
	if err != nil || !ok {
		return err
	}
	if err := p.publish(ctx, src, "", nil, nil, &cursorUpdate{cursorKey(src.ID, campaign), Cursor{}}); err != nil {
		return err
	}
	return p.pollCampaign(ctx, sem, client, src, campaign)
}
