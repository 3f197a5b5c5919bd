package exactlyonce_test

import (
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/exactlyonce"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
)

// TestCheck: the checker itself catches each kind of violation.
func TestCheck(t *testing.T) {
	exp := map[string]events.Event{"a": {ID: "a"}, "b": {ID: "b"}, "c": {ID: "c"}}
	d := func(key, identity string) exactlyonce.Delivered {
		return exactlyonce.Delivered{AppID: "app", Event: heaptest.Event{IdempotencyKey: key, Identity: identity, Event: "Open Email"}}
	}
	cases := []struct {
		name      string
		delivered []exactlyonce.Delivered
		dead      []exactlyonce.DeadLetter
		ok        bool
	}{
		{"all delivered", []exactlyonce.Delivered{d("a", "1"), d("b", "2"), d("c", "3")}, nil, true},
		{"one dead-lettered", []exactlyonce.Delivered{d("a", "1"), d("b", "2")}, []exactlyonce.DeadLetter{{"c", "HTTP 400"}}, true},
		{"missing", []exactlyonce.Delivered{d("a", "1"), d("b", "2")}, nil, false},
		{"dead letter without reason", []exactlyonce.Delivered{d("a", "1"), d("b", "2")}, []exactlyonce.DeadLetter{{"c", ""}}, false},
		{"unexpected", []exactlyonce.Delivered{d("a", "1"), d("b", "2"), d("c", "3"), d("z", "4")}, nil, false},
		{"kept twice", []exactlyonce.Delivered{d("a", "1"), d("b", "2"), d("c", "3"), d("c", "3")}, nil, false},
		{"same event under two keys", []exactlyonce.Delivered{d("a", "1"), d("b", "1"), d("c", "3")}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := exactlyonce.Check(exp, c.delivered, c.dead)
			if rep.OK() != c.ok {
				t.Fatalf("OK() = %v, want %v: %s", rep.OK(), c.ok, rep)
			}
		})
	}
}

func TestExactlyOnceMapperKilled(t *testing.T) {
	run(t, scenario{events: 10000, mapperKills: 5})
}

func TestExactlyOnceEmitterKilled(t *testing.T) {
	run(t, scenario{events: 4000, emitterKills: 3})
}

func TestExactlyOnceHeapFaults(t *testing.T) {
	run(t, scenario{events: 4000, heapFaults: true, poison: true})
}

func TestExactlyOnceRedisRestart(t *testing.T) {
	run(t, scenario{events: 4000, redisRestart: true})
}

func TestExactlyOnceBrokerRestart(t *testing.T) {
	run(t, scenario{events: 4000, brokerRestart: true})
}
