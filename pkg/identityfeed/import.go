package identityfeed

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// DefaultImportBatch is how many records Import produces before it waits for
// their acknowledgements: large enough to keep the producer's batches full,
// small enough that memory stays bounded on a file of millions of rows.
const DefaultImportBatch = 5000

// MaxReportedRows bounds ImportResult.Bad; BadRows still counts them all.
const MaxReportedRows = 1000

// ImportConfig is what Import needs.
type ImportConfig struct {
	Source    source.Source
	Topic     string          // heap.identities
	Publisher kafka.Publisher // nil only with DryRun
	DryRun    bool            // read and check every row, record nothing
	Batch     int             // records per acknowledged batch; default DefaultImportBatch
	Now       func() time.Time
}

// BadRow is a row Import skipped. Reasons never quote the email.
type BadRow struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// ImportResult counts what Import read and recorded.
type ImportResult struct {
	Rows     int      // data rows read (the header excluded)
	Recorded int      // mappings acknowledged by Kafka (would be, with DryRun)
	BadRows  int      // rows skipped
	Bad      []BadRow // the first MaxReportedRows of them, by line
}

// Import reads a CSV export of (identity, email) rows and records each
// mapping in the identities topic, waiting for Kafka's acknowledgement of
// every batch. A header row naming the identity and email columns, in any
// order, is detected; without one the columns are identity, email. Fields
// are trimmed, emails matched case-insensitively, identities kept in their
// case. Bad rows are skipped and reported by line. Importing a file again is
// harmless: the topic is compacted by email, the latest mapping wins.
func Import(ctx context.Context, r io.Reader, cfg ImportConfig) (ImportResult, error) {
	var res ImportResult
	src := cfg.Source
	if src.JoinsOnIdentity() {
		return res, fmt.Errorf("identityfeed: source %q joins on identity (email_property: identity): there is nothing to import", src.ID)
	}
	if cfg.Publisher == nil && !cfg.DryRun {
		return res, errors.New("identityfeed: import needs a publisher")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultImportBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	at := cfg.Now()
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked per row, so one short row is reported, not fatal
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	identCol, emailCol, width := 0, 1, 2
	bad := func(line int, format string, a ...any) {
		res.BadRows++
		if len(res.Bad) < MaxReportedRows {
			res.Bad = append(res.Bad, BadRow{Line: line, Reason: fmt.Sprintf(format, a...)})
		}
	}
	batch := make([]*kgo.Record, 0, cfg.Batch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if !cfg.DryRun {
			if err := cfg.Publisher.Publish(ctx, batch...); err != nil {
				return fmt.Errorf("identityfeed: import: %d rows recorded, then: %w", res.Recorded, err)
			}
		}
		res.Recorded += len(batch)
		batch = batch[:0]
		return nil
	}
	first := true
	for {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			// A malformed line (a stray quote): skip it, keep reading.
			res.Rows++
			bad(perr.StartLine, "not valid CSV: %v", perr.Err)
			first = false
			continue
		}
		if err != nil {
			return res, fmt.Errorf("identityfeed: import: read: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if len(row) > 0 {
				row[0] = strings.TrimPrefix(row[0], "\ufeff") // a spreadsheet's byte order mark
			}
			if i, e, ok := header(row); ok {
				identCol, emailCol, width = i, e, len(row)
				continue
			}
		}
		res.Rows++
		if len(row) != width {
			bad(line, "%d fields, want %d", len(row), width)
			continue
		}
		ident := strings.TrimSpace(row[identCol])
		if reason := checkIdentity(ident); reason != "" {
			bad(line, "%s", reason)
			continue
		}
		email, reason := checkEmail(row[emailCol], "email")
		if reason != "" {
			bad(line, "%s", reason)
			continue
		}
		rec, err := identity.Bind(src.ID, src.HeapAppID, email, ident, at).Record(cfg.Topic)
		if err != nil {
			bad(line, "%v", err)
			continue
		}
		rec.Headers = []kgo.RecordHeader{{Key: kafka.HeaderSource, Value: []byte(src.ID)}}
		batch = append(batch, rec)
		if len(batch) == cfg.Batch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	return res, flush()
}

// header reports whether row names the identity and email columns.
func header(row []string) (identCol, emailCol int, ok bool) {
	identCol, emailCol = -1, -1
	for i, f := range row {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "identity":
			identCol = i
		case "email":
			emailCol = i
		}
	}
	return identCol, emailCol, identCol >= 0 && emailCol >= 0
}
