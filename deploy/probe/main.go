// Command probe is the container health check: the images are distroless
// (no shell, no curl), so docker-compose's healthcheck runs this instead.
// It exits 0 when the URL answers 2xx within the timeout, 1 otherwise.
//
//	probe http://127.0.0.1:9090/readyz
//
// It speaks just enough HTTP/1.0 over net rather than importing net/http,
// which would quadruple the size every image carries.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe http://HOST:PORT/PATH")
		os.Exit(2)
	}
	if err := check(os.Args[1], 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func check(raw string, timeout time.Duration) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("want an http://host:port/path URL, got %q", raw)
	}
	conn, err := net.DialTimeout("tcp", u.Host, timeout)
	if err != nil {
		return fmt.Errorf("dial %s: %w", u.Host, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("deadline: %w", err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: probe\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read %s: %w", raw, err)
	}
	// "HTTP/1.1 200 OK"
	f := strings.Fields(status)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") || len(f[1]) != 3 || f[1][0] != '2' {
		return fmt.Errorf("%s answered %q", raw, strings.TrimSpace(status))
	}
	return nil
}
