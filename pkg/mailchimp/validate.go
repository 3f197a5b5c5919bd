package mailchimp

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// What the pipeline accepts of a parsed payload beyond its syntax: event
// times in a sane range and addresses fit to be Heap identities. Parsing
// says whether a payload reads; Validate says whether what it says can be
// believed, given when it was received. Ingress takes a payload that parses
// (Mailchimp must not retry garbage for an hour or disable the hook); the
// mapper dead-letters one that does not validate, with the error's text as
// the reason. That text names the field and never quotes an address.

// EarliestEventTime is the earliest event time believed: nothing Mailchimp
// reports happened before it.
var EarliestEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxAhead is how far past its receipt an event's time may be (clocks
// disagree; a day is far more than they do).
const MaxAhead = 24 * time.Hour

// latestEventTime bounds every event time, known receipt or not: the last
// second of a four-digit year (ISO 8601 as Heap takes it), well inside what
// milliseconds since 1970 in an int64 (Avro's timestamp-millis) can hold.
var latestEventTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// ErrOutOfRange marks an event time outside EventTimeRange. Errors that
// wrap it wrap ErrMalformed too when they come from Validate.
var ErrOutOfRange = errors.New("out of range (before 2000 or more than a day ahead)")

// EventTimeRange is the range of event times believed of a payload received
// at receivedAt: from EarliestEventTime to MaxAhead after receivedAt. A zero
// receivedAt (not known) bounds the range by the year 9999 only, as does a
// receivedAt too late for the year 9999; one before 2000 leaves no time
// believable.
func EventTimeRange(receivedAt time.Time) (earliest, latest time.Time) {
	latest = latestEventTime
	// Compared before adding: the sum cannot pass the year 9999.
	if !receivedAt.IsZero() && receivedAt.Before(latestEventTime.Add(-MaxAhead)) {
		latest = receivedAt.Add(MaxAhead)
	}
	return EarliestEventTime, latest
}

// UnixTime is time.Unix(sec, 0) in UTC, for sec in EventTimeRange(receivedAt).
// sec is compared in seconds before any conversion, so no value overflows
// (time.Unix(math.MaxInt64, 0) is in 1969, and sec*1000 of a 17-digit sec
// wraps to a plausible date); outside the range the error wraps
// ErrOutOfRange and quotes sec.
func UnixTime(sec int64, receivedAt time.Time) (time.Time, error) {
	earliest, latest := EventTimeRange(receivedAt)
	// latest.Unix() rounds down: sec <= it is exactly time.Unix(sec, 0) <= latest.
	if sec < earliest.Unix() || sec > latest.Unix() {
		return time.Time{}, fmt.Errorf("%d %w", sec, ErrOutOfRange)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// CheckEventTime is nil when t is in EventTimeRange(receivedAt), else an
// error that wraps ErrOutOfRange and quotes t.
func CheckEventTime(t, receivedAt time.Time) error {
	earliest, latest := EventTimeRange(receivedAt)
	if t.Before(earliest) || t.After(latest) {
		return fmt.Errorf("%s %w", t.UTC().Format(time.RFC3339Nano), ErrOutOfRange)
	}
	return nil
}

// CheckAddress is nil when email is valid UTF-8 without control characters
// (C0, DEL, C1) or U+FFFD, which is what encoding/json makes of bytes that
// are not UTF-8. The error says what and at which byte (counted from 0),
// never what the address is.
func CheckAddress(email string) error {
	for i := 0; i < len(email); {
		c := email[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("control character at byte %d", i)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(email[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		case r == utf8.RuneError:
			return fmt.Errorf("invalid UTF-8 (U+FFFD) at byte %d", i)
		case r >= 0x80 && r <= 0x9f:
			return fmt.Errorf("control character at byte %d", i)
		}
		i += n
	}
	return nil
}

// invalid is a Validate error: ErrMalformed and err (ErrOutOfRange, when it
// is one), after context naming the payload and field.
func invalid(err error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, fmt.Sprintf(format, args...), err)
}

// Validate checks the event's ts and msg.email. A sync event (no event
// name) has nothing to map and nothing to check.
func (e MandrillEvent) Validate(receivedAt time.Time) error {
	if e.Event == "" {
		return nil
	}
	if _, err := e.Time(receivedAt); err != nil {
		return invalid(err, "mandrill event %s: ts", e.Event)
	}
	if err := CheckAddress(e.Msg.Email); err != nil {
		return invalid(err, "mandrill event %s: msg.email", e.Event)
	}
	return nil
}

// Validate checks fired_at and the addresses the webhook's type carries.
func (w ListWebhook) Validate(receivedAt time.Time) error {
	if err := CheckEventTime(w.FiredAt, receivedAt); err != nil {
		return invalid(err, "list webhook %s: fired_at", w.Type)
	}
	check := func(field, email string) error {
		if err := CheckAddress(email); err != nil {
			return invalid(err, "list webhook %s: data[%s]", w.Type, field)
		}
		return nil
	}
	switch w.Type {
	case ListCampaign:
		return nil
	case ListUpemail:
		if err := check("old_email", w.OldEmail); err != nil {
			return err
		}
		return check("new_email", w.NewEmail)
	default:
		return check("email", w.Email)
	}
}

// Validate checks email_address and every activity's timestamp: one bad
// action dead-letters the member, the unit it came in.
func (m ActivityMember) Validate(receivedAt time.Time) error {
	if err := CheckAddress(m.EmailAddress); err != nil {
		return invalid(err, "email-activity member: email_address")
	}
	for i, a := range m.Activity {
		if err := CheckEventTime(a.Timestamp, receivedAt); err != nil {
			return invalid(err, "email-activity member: activity[%d].timestamp", i)
		}
	}
	return nil
}
