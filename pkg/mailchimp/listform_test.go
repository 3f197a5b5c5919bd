package mailchimp

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// slowListForm is what ParseListWebhook read before scanListForm: the
// fields of url.ParseQuery's map.
func slowListForm(body []byte) (listForm, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return listForm{}, err
	}
	f := listForm{typ: form.Get("type"), fired: form.Get("fired_at"), data: map[string]string{}}
	for k, vs := range form {
		if inner, ok := strings.CutPrefix(k, "data["); ok && strings.HasSuffix(inner, "]") && len(vs) > 0 {
			f.data[strings.TrimSuffix(inner, "]")] = vs[0]
		}
	}
	return f, nil
}

func listFormSeeds(t testing.TB) [][]byte {
	t.Helper()
	paths, err := filepath.Glob("fixtures/list-webhooks/*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no list webhook fixtures: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out,
		[]byte("type=subscribe&type=profile&fired_at=2026-10-05+08%3A30%3A00&data[email]=a%40b&data%5Bemail%5D=c%40d"),
		[]byte("data[email]=x&data[email]=y&data[]=z&data[=w&data[]]=v&=novalue&&&type&fired_at="),
		[]byte("type=subscribe;fired_at=x"),
		[]byte("type=sub%zzscribe&fired_at=2026-10-05+08:30:00"),
		[]byte("type=subscribe&fired_at=2026-10-05+08:30:00&data[merges][EMAIL]=a%2Bb%40c&data[email]=a+b%40c"),
		[]byte(strings.Repeat("data[x]=1&", 300)+"type=subscribe"),
		[]byte(""),
	)
}

// checkListForm: whenever scanListForm reads a body, it reads what
// url.ParseQuery reads; it declines every body url.ParseQuery rejects.
func checkListForm(t *testing.T, body []byte) {
	fast, ok := scanListForm(body)
	slow, err := slowListForm(body)
	if !ok {
		return // parsed by url.ParseQuery itself
	}
	if err != nil {
		t.Fatalf("fast path read %q, which url.ParseQuery rejects: %v", body, err)
	}
	fast.hasType, fast.hasFired = false, false
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %+v\nslow %+v", body, fast, slow)
	}
}

func TestScanListFormAgreesWithParseQuery(t *testing.T) {
	read := 0
	for _, b := range listFormSeeds(t) {
		checkListForm(t, b)
		if _, ok := scanListForm(b); ok {
			read++
		}
	}
	if read == 0 {
		t.Fatal("the fast path read none of the seeds")
	}
	if _, ok := scanListForm([]byte("type=subscribe;fired_at=x")); ok {
		t.Fatal("a semicolon must go to url.ParseQuery")
	}
}

func FuzzScanListForm(f *testing.F) {
	for _, b := range listFormSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkListForm)
}

// checkFiredAt: the fast path gives time.ParseInLocation's time, and fails
// where it fails.
func checkFiredAt(t *testing.T, s string) {
	got, err := parseFiredAt(s)
	want, wantErr := time.ParseInLocation(FiredAtLayout, s, time.UTC)
	if (err != nil) != (wantErr != nil) || !got.Equal(want) || got.Location() != want.Location() {
		t.Fatalf("%q: got %v, %v; time.ParseInLocation %v, %v", s, got, err, want, wantErr)
	}
}

var firedAtSeeds = []string{
	"2026-10-02 14:21:09", "2024-02-29 00:00:00", "2025-02-29 00:00:00", "2026-04-31 10:00:00",
	"2026-13-01 10:00:00", "2026-00-10 10:00:00", "2026-01-00 10:00:00", "2026-01-01 24:00:00",
	"2026-01-01 23:60:00", "2026-01-01 23:59:60", "2026-01-01 23:59:59.5", "2026-1-01 23:59:59",
	"0000-01-01 00:00:00", "9999-12-31 23:59:59", "2026-01-01T23:59:59", "+026-01-01 23:59:59", "",
}

func TestParseFiredAtAgrees(t *testing.T) {
	for _, s := range firedAtSeeds {
		checkFiredAt(t, s)
	}
}

func FuzzParseFiredAt(f *testing.F) {
	for _, s := range firedAtSeeds {
		f.Add(s)
	}
	f.Fuzz(checkFiredAt)
}
