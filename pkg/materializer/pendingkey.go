package materializer

import (
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
)

// pendingKey is events.Event.PendingKey's layout, from its parts.
func pendingKey(app, emailKey, id string) []byte {
	return events.Event{AppID: app, EmailKey: emailKey, ID: id}.PendingKey()
}

func splitPendingKey(k []byte) (app, emailKey, id string, ok bool) {
	var parts [3]string
	n := 0
	start := 0
	for i, b := range k {
		if b == 0 {
			if n == 2 {
				return "", "", "", false
			}
			parts[n] = string(k[start:i])
			n++
			start = i + 1
		}
	}
	if n != 2 {
		return "", "", "", false
	}
	parts[2] = string(k[start:])
	return parts[0], parts[1], parts[2], true
}
