package kafka_test

import (
	"os"
	"strings"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// TestACLTableInDocs: docs/CONNECTING.md carries the table and commands
// kafka.Needs generates (ctl acls print), so the guide cannot drift from
// what the services check and the tests grant.
func TestACLTableInDocs(t *testing.T) {
	var b strings.Builder
	if err := kafka.WriteACLTable(&b, "", func(role string) string { return "User:mailchimp-heap-" + role }); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/CONNECTING.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), b.String()) {
		t.Fatalf("docs/CONNECTING.md does not hold the output of `ctl acls print`; paste it after the ACL TABLE marker:\n%s", b.String())
	}
}
