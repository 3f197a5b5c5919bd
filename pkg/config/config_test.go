package config

import (
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
)

// lookupFrom returns an environment lookup over a fixed map, so tests never
// read the process environment.
func lookupFrom(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func defaultEnv() Env {
	return Env{
		IngressAddr:        ":8080",
		IngressMaxConns:    1024,
		IngressMaxInflight: 64 << 20,
		AdminAddr:          ":9090",
		Partitions:         6,
		Replication:        -1,
		DataDir:            "./data",
		LogLevel:           "info",
		ProduceTimeout:     8 * time.Second,
		HeapTimeout:        30 * time.Second,
		LedgerTTL:          24 * time.Hour,
		SweepInterval:      30 * time.Second,
		MapperSessions:     2,
		MailchimpLoginURL:  "https://login.mailchimp.com",
		Kafka:              kafka.Security{ClientID: "mailchimp-heap"},

		SchemaRegistryAutoRegister: true,
	}
}

func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		want    func(*Env) // edits applied to defaultEnv()
		wantErr string     // substring; empty means no error
	}{
		{name: "defaults", vars: nil, want: func(*Env) {}},
		{
			name: "empty values fall back to defaults",
			vars: map[string]string{"INGRESS_ADDR": "", "TOPIC_PARTITIONS": "", "PRODUCE_TIMEOUT": ""},
			want: func(*Env) {},
		},
		{
			name: "overrides",
			vars: map[string]string{
				"INGRESS_ADDR":      ":18080",
				"ADMIN_ADDR":        "127.0.0.1:19090",
				"KAFKA_BROKERS":     "k1:9092,k2:9092",
				"TOPIC_PREFIX":      "dev.",
				"TOPIC_PARTITIONS":  "12",
				"TOPIC_REPLICATION": "3",
				"REDIS_URL":         "redis://localhost:6379/0",
				"DATA_DIR":          "/var/lib/mh",
				"HEAP_API_URL":      "http://localhost:7000",
				"SOURCES_FILE":      "/etc/mh/sources.yaml",
				"INSTANCE_ID":       "mapper-0",
				"LOG_LEVEL":         "debug",
				"PRODUCE_TIMEOUT":   "2s",
				"HEAP_TIMEOUT":      "1m30s",
				"LEDGER_TTL":        "48h",
				"DEMO":              "true",
			},
			want: func(e *Env) {
				e.IngressAddr = ":18080"
				e.AdminAddr = "127.0.0.1:19090"
				e.KafkaBrokers = []string{"k1:9092", "k2:9092"}
				e.TopicPrefix = "dev."
				e.Partitions = 12
				e.Replication = 3
				e.RedisURL = "redis://localhost:6379/0"
				e.DataDir = "/var/lib/mh"
				e.HeapAPIURL = "http://localhost:7000"
				e.SourcesFile = "/etc/mh/sources.yaml"
				e.InstanceID = "mapper-0"
				e.LogLevel = "debug"
				e.ProduceTimeout = 2 * time.Second
				e.HeapTimeout = 90 * time.Second
				e.LedgerTTL = 48 * time.Hour
				e.Demo = true
			},
		},
		{
			name: "unknown variables are ignored",
			vars: map[string]string{"NOT_A_SETTING": "x", "PATH": "/bin"},
			want: func(*Env) {},
		},
		{name: "zero mapper sessions", vars: map[string]string{"MAPPER_SESSIONS": "0"}, wantErr: "MAPPER_SESSIONS must be at least 1"},
		{name: "zero partitions", vars: map[string]string{"TOPIC_PARTITIONS": "0"}, wantErr: "TOPIC_PARTITIONS must be at least 1"},
		{name: "negative partitions", vars: map[string]string{"TOPIC_PARTITIONS": "-2"}, wantErr: "TOPIC_PARTITIONS must be at least 1"},
		{name: "partitions not a number", vars: map[string]string{"TOPIC_PARTITIONS": "six"}, wantErr: "Partitions"},
		{name: "partitions overflow int32", vars: map[string]string{"TOPIC_PARTITIONS": "4294967296"}, wantErr: "Partitions"},
		{name: "replication overflow int16", vars: map[string]string{"TOPIC_REPLICATION": "40000"}, wantErr: "Replication"},
		{name: "bad duration", vars: map[string]string{"PRODUCE_TIMEOUT": "8 seconds"}, wantErr: "ProduceTimeout"},
		{name: "duration without unit", vars: map[string]string{"HEAP_TIMEOUT": "30"}, wantErr: "HeapTimeout"},
		{name: "zero produce timeout", vars: map[string]string{"PRODUCE_TIMEOUT": "0s"}, wantErr: "PRODUCE_TIMEOUT must be positive"},
		{name: "negative heap timeout", vars: map[string]string{"HEAP_TIMEOUT": "-1s"}, wantErr: "HEAP_TIMEOUT must be positive"},
		{name: "zero ledger ttl", vars: map[string]string{"LEDGER_TTL": "0h"}, wantErr: "LEDGER_TTL must be positive"},
		{name: "bad bool", vars: map[string]string{"DEMO": "maybe"}, wantErr: "Demo"},
		{
			name:    "every validation error is reported",
			vars:    map[string]string{"TOPIC_PARTITIONS": "0", "PRODUCE_TIMEOUT": "0s", "HEAP_TIMEOUT": "0s", "LEDGER_TTL": "0s"},
			wantErr: "TOPIC_PARTITIONS must be at least 1\nPRODUCE_TIMEOUT must be positive\nHEAP_TIMEOUT must be positive\nLEDGER_TTL must be positive",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadEnv(lookupFrom(tt.vars))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("LoadEnv() = %+v, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadEnv() error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadEnv() error = %v", err)
			}
			want := defaultEnv()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LoadEnv() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadEnvIgnoresProcessEnvironment proves the lookup is the only input:
// a variable set in the real environment must not leak in.
func TestLoadEnvIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("INGRESS_ADDR", ":1")
	t.Setenv("TOPIC_PARTITIONS", "0")
	got, err := LoadEnv(lookupFrom(nil))
	if err != nil {
		t.Fatalf("LoadEnv() error = %v", err)
	}
	if diff := cmp.Diff(defaultEnv(), got); diff != "" {
		t.Errorf("LoadEnv() read the process environment (-want +got):\n%s", diff)
	}
}

func TestLoadEnvAsksOnlyForKnownNames(t *testing.T) {
	asked := map[string]bool{}
	_, err := LoadEnv(func(k string) (string, bool) {
		asked[k] = true
		return "", false
	})
	if err != nil {
		t.Fatalf("LoadEnv() error = %v", err)
	}
	for _, k := range []string{"INGRESS_ADDR", "KAFKA_BROKERS", "TOPIC_PARTITIONS", "PRODUCE_TIMEOUT", "LEDGER_TTL", "DEMO"} {
		if !asked[k] {
			t.Errorf("LoadEnv() never looked up %s", k)
		}
	}
	// Every field, nested settings included, is asked for as NAME and NAME_FILE.
	n := 0
	for _, typ := range []reflect.Type{reflect.TypeFor[Env](), reflect.TypeFor[kafka.Security](), reflect.TypeFor[redisconn.Options]()} {
		n += typ.NumField()
	}
	n -= 2 // the nested structs themselves
	if len(asked) != 2*n {
		t.Errorf("LoadEnv() looked up %d names, want %d (NAME and NAME_FILE per setting): %v", len(asked), 2*n, asked)
	}
}

func TestEnvValidate(t *testing.T) {
	e := defaultEnv()
	e.IngressAddr = ""
	err := e.Validate()
	if err == nil || !strings.Contains(err.Error(), "INGRESS_ADDR must not be empty") {
		t.Errorf("Validate() = %v, want INGRESS_ADDR error", err)
	}
	if err := defaultEnv().Validate(); err != nil {
		t.Errorf("Validate() of defaults = %v", err)
	}
}

func TestOAuthNeedsItsSettings(t *testing.T) {
	lookup := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	if _, err := LoadEnv(lookup(map[string]string{"MAILCHIMP_CLIENT_ID": "id"})); err == nil {
		t.Fatal("a client id without secret, redirect URL and TOKEN_KEY was accepted")
	}
	e, err := LoadEnv(lookup(map[string]string{"MAILCHIMP_CLIENT_ID": "id", "MAILCHIMP_CLIENT_SECRET": "s",
		"MAILCHIMP_REDIRECT_URL": "https://hooks.example.com/connect/mailchimp/callback", "TOKEN_KEY": "k"}))
	if err != nil || !e.OAuth() {
		t.Fatalf("complete OAuth settings refused: %v", err)
	}
}

func TestLoadEnvFromFiles(t *testing.T) {
	dir := t.TempDir()
	pw := dir + "/sasl-password"
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		vars    map[string]string
		want    kafka.Secret
		wantErr string
	}{
		{"from the file, newline dropped", map[string]string{"KAFKA_SASL_PASSWORD_FILE": pw}, "s3cret", ""},
		{"from the variable", map[string]string{"KAFKA_SASL_PASSWORD": "direct-pw"}, "direct-pw", ""},
		{"both", map[string]string{"KAFKA_SASL_PASSWORD": "direct-pw", "KAFKA_SASL_PASSWORD_FILE": pw}, "", "KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set"},
		{"missing file", map[string]string{"KAFKA_SASL_PASSWORD_FILE": dir + "/nope"}, "", "KAFKA_SASL_PASSWORD_FILE: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "mh"}
			maps.Copy(vars, tc.vars)
			e, err := LoadEnv(lookupFrom(vars))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadEnv: %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "direct-pw") {
					t.Fatalf("error carries the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Kafka.SASLPassword != tc.want {
				t.Fatalf("password %q", string(e.Kafka.SASLPassword))
			}
		})
	}
}
