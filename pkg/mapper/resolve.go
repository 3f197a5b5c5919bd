package mapper

import (
	"context"
	"fmt"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
)

// resolveCampaigns stores the batch's campaign metadata, then fills titles.
func (m *loop) resolveCampaigns(ctx context.Context, batch []mapped) error {
	metas := map[string][]campaigns.Meta{}
	want := map[string][]string{}
	seen := map[[2]string]struct{}{} // source, campaign: a set, not a scan of want
	for _, mp := range batch {
		if c := mp.res.Campaign; c != nil {
			metas[mp.source.ID] = append(metas[mp.source.ID], *c)
		}
		for j := range mp.res.Events {
			// By pointer, not a copy of the whole event: resolveIdentities
			// sets Identity meanwhile.
			e := &mp.res.Events[j]
			if e.CampaignTitle == "" && e.CampaignID != "" {
				k := [2]string{mp.source.ID, e.CampaignID}
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					want[mp.source.ID] = append(want[mp.source.ID], e.CampaignID)
				}
			}
		}
	}
	for src, ms := range metas {
		if err := m.cfg.Campaigns.Remember(ctx, src, ms); err != nil {
			return fmt.Errorf("%w: %w", ErrDependency, err)
		}
	}
	if len(want) == 0 {
		return nil
	}
	titles, err := lookupEach(want, func(src string, ids []string) (map[string]string, error) {
		return m.cfg.Campaigns.Titles(ctx, src, ids)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDependency, err)
	}
	for i := range batch {
		t, found := titles[batch[i].source.ID]
		if !found {
			continue
		}
		for j := range batch[i].res.Events {
			e := &batch[i].res.Events[j]
			if e.CampaignTitle == "" {
				e.CampaignTitle = t[e.CampaignID]
			}
		}
	}
	return nil
}

// resolveIdentities looks up, per app, the identities of sources that join
// on a custom property, in one pipeline per app.
func (m *loop) resolveIdentities(ctx context.Context, batch []mapped) error {
	keys := map[string][]string{}
	seen := map[[2]string]struct{}{} // app, email key
	for _, mp := range batch {
		for j := range mp.res.Events {
			// By pointer, not a copy of the whole event: resolveCampaigns
			// sets CampaignTitle meanwhile.
			e := &mp.res.Events[j]
			if e.Identity == "" {
				k := [2]string{e.AppID, e.EmailKey}
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					keys[e.AppID] = append(keys[e.AppID], e.EmailKey)
				}
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	found, err := lookupEach(keys, func(app string, ks []string) (map[string]string, error) {
		return m.cfg.Identities.Resolve(ctx, app, ks)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDependency, err)
	}
	for i := range batch {
		for j := range batch[i].res.Events {
			e := &batch[i].res.Events[j]
			if e.Identity == "" {
				e.Identity = found[e.AppID][e.EmailKey]
			}
		}
	}
	return nil
}

// lookupEach runs one lookup (a Redis pipeline) per group at once, rather
// than one round trip after another, and returns the answers by group: the
// first error, if any.
func lookupEach(groups map[string][]string, lookup func(group string, keys []string) (map[string]string, error)) (map[string]map[string]string, error) {
	type answer struct {
		group string
		found map[string]string
		err   error
	}
	answers := make(chan answer, len(groups))
	for g, ks := range groups {
		go func() {
			f, err := lookup(g, ks)
			answers <- answer{g, f, err}
		}()
	}
	out := make(map[string]map[string]string, len(groups))
	var first error
	for range groups {
		a := <-answers
		if a.err != nil && first == nil {
			first = a.err
		}
		out[a.group] = a.found
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}
