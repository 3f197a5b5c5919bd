// Package schemas holds the Avro schemas of the pipeline's topics, embedded
// so that every service encodes with the very file reviewed here.
package schemas

import _ "embed"

// HeapEmailEvent is the schema of heap.events and heap.events.pending values.
//
//go:embed heap_email_event.avsc
var HeapEmailEvent string
