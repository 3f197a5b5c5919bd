package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// acls prints or applies the ACLs each service's principal needs
// (kafka.Needs): the table of docs/CONNECTING.md, ready kafka-acls
// commands, or the ACLs themselves created through the admin API.
func init() {
	register("acls", "acls print|apply [-format markdown|commands] [-principal role=User:name ...]", runACLs)
}

func runACLs(args []string) int {
	if len(args) == 0 || (args[0] != "print" && args[0] != "apply") {
		fmt.Fprintln(os.Stderr, "usage: ctl acls print|apply [-format markdown|commands] [-principal role=User:name ...]")
		return 2
	}
	fs := flag.NewFlagSet("acls "+args[0], flag.ExitOnError)
	var k kafkaFlags
	k.register(fs)
	format := fs.String("format", "markdown", "print: markdown (table and commands) or commands")
	principals := configFlag{}
	fs.Var(principals, "principal", "role=User:name, the principal a role runs as (repeatable; default User:mailchimp-heap-<role>)")
	timeout := fs.Duration("timeout", time.Minute, "apply: give up after this long")
	fs.Parse(args[1:])
	principal := func(role string) string {
		if p, ok := principals[role]; ok {
			return p
		}
		return "User:mailchimp-heap-" + role
	}
	if args[0] == "print" {
		switch *format {
		case "markdown":
			if err := kafka.WriteACLTable(os.Stdout, k.prefix, principal); err != nil {
				fmt.Fprintln(os.Stderr, "ctl:", err)
				return 1
			}
		case "commands":
			for _, role := range kafka.Roles {
				needs, _ := kafka.Needs(role, kafka.NewTopics(k.prefix), k.prefix, "")
				for _, a := range needs {
					fmt.Println(a.Command(principal(role)))
				}
			}
		default:
			fmt.Fprintf(os.Stderr, "ctl: -format %q: want markdown or commands\n", *format)
			return 2
		}
		return 0
	}
	if len(principals) == 0 {
		fmt.Fprintln(os.Stderr, "ctl: apply needs -principal role=User:name for each role to grant, e.g. -principal mapper=User:mailchimp-heap-mapper")
		return 2
	}
	return k.withAdmin(*timeout, func(ctx context.Context, adm *kadm.Client) error {
		for _, role := range kafka.Roles {
			if _, ok := principals[role]; !ok {
				continue // only the roles given a principal
			}
			needs, _ := kafka.Needs(role, kafka.NewTopics(k.prefix), k.prefix, "")
			if err := kafka.Grant(ctx, adm, principal(role), needs); err != nil {
				return err
			}
			fmt.Printf("granted %s's %d ACLs to %s\n", role, len(needs), principal(role))
		}
		return nil
	})
}
