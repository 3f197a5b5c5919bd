// Package schemas holds the Avro schemas of the pipeline's topics, embedded
// so that every service encodes with the very file reviewed here.
package schemas

import _ "embed"

// HeapEmailEvent is the current schema of heap.events and
// heap.events.pending values: what this build writes.
//
//go:embed heap_email_event.avsc
var HeapEmailEvent string

// HeapEmailEventVersions are the versions of HeapEmailEvent this build
// reads, oldest first, HeapEmailEvent among them; version n is entry n-1.
// Readers resolve a record of any of them to HeapEmailEvent (pkg/events),
// and a test holds every pair of them compatible both ways (full
// transitive compatibility), so any reader reads any writer's records.
//
// A new version: copy heap_email_event.avsc to heap_email_event.v<n>.avsc
// for the version it holds now and embed that copy here in its place, then
// change heap_email_event.avsc (adding fields with defaults, or removing
// fields that have them). Without a schema registry a reader knows a
// writer's schema only from this list, so release the readers that list a
// version before the writers that write it: a version can be listed here
// before it becomes HeapEmailEvent.
var HeapEmailEventVersions = []string{HeapEmailEvent}
