package kafka

import (
	"fmt"
	"io"
	"strings"
)

// WriteACLTable writes Needs for every role as a Markdown table, and then
// as kafka-acls commands granting each role's ACLs to principal(role):
// docs/CONNECTING.md carries this output (ctl acls -format markdown).
func WriteACLTable(w io.Writer, prefix string, principal func(role string) string) error {
	t := NewTopics(prefix)
	fmt.Fprintln(w, "| role | resource | name | pattern | operations | why |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, role := range Roles {
		needs, err := Needs(role, t, prefix, "")
		if err != nil {
			return err
		}
		for _, a := range needs {
			pattern := "literal"
			if a.Prefixed {
				pattern = "prefixed"
			}
			fmt.Fprintf(w, "| %s | %s | `%s` | %s | %s | %s |\n", role, a.Resource, a.Name, pattern, strings.Join(a.Ops, ", "), a.Why)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "```sh")
	for _, role := range Roles {
		needs, _ := Needs(role, t, prefix, "")
		fmt.Fprintf(w, "# %s, as %s\n", role, principal(role))
		for _, a := range needs {
			fmt.Fprintln(w, a.Command(principal(role)))
		}
	}
	fmt.Fprintln(w, "```")
	return nil
}
