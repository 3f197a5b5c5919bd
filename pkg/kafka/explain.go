package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Connection failures the operator must fix, each named in one line by
// Explain. They are fatal for the process: retrying does not change them.
var (
	ErrAuthentication = errors.New("authentication failed")
	ErrUntrusted      = errors.New("certificate not trusted")
	ErrCertRefused    = errors.New("client certificate refused")
	ErrNotTLS         = errors.New("TLS handshake failed")
)

// Explain turns a client error into one line that names its cause. Errors it
// does not recognise come back wrapped as they are.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recHdr    tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case errors.Is(err, ErrAuthentication), errors.Is(err, ErrUntrusted), errors.Is(err, ErrNotAuthorized),
		errors.Is(err, ErrTopicMissing), errors.Is(err, ErrCertRefused), errors.Is(err, ErrNotTLS):
		return err
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("kafka: %w: the broker refused the SASL credentials (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD): %v", ErrAuthentication, kerr.SaslAuthenticationFailed)
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("kafka: %w: the listener does not accept KAFKA_SASL_MECHANISM: %v", ErrAuthentication, err)
	case errors.Is(err, ErrTokenExpired):
		return fmt.Errorf("kafka: %w: %v", ErrAuthentication, err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("kafka: %w: the broker's certificate is not signed by a CA in KAFKA_TLS_CA_FILE or the system pool", ErrUntrusted)
	case errors.As(err, &hostErr):
		return fmt.Errorf("kafka: %w: the broker's certificate is not valid for %s (set KAFKA_TLS_SERVER_NAME to a name it holds): %v", ErrUntrusted, hostErr.Host, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("kafka: %w: the broker's certificate is invalid: %v", ErrUntrusted, err)
	case strings.Contains(msg, "remote error: tls:"):
		return fmt.Errorf("kafka: %w: the broker refused the TLS handshake (client certificate missing or not trusted: KAFKA_TLS_CERT_FILE / KAFKA_TLS_KEY_FILE): %v", ErrCertRefused, err)
	case errors.As(err, &recHdr), strings.Contains(msg, "first record does not look like a TLS handshake"):
		return fmt.Errorf("kafka: %w: the listener does not speak TLS (unset KAFKA_TLS_ENABLED, or use the TLS port)", ErrNotTLS)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("kafka: %w: %v (grant the ACLs in docs/CONNECTING.md)", ErrNotAuthorized, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("kafka: the broker closed the connection before answering (a TLS or SASL listener reached without KAFKA_TLS_ENABLED / KAFKA_SASL_MECHANISM?): %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("kafka: no broker answered: %w", err)
		}
		return fmt.Errorf("kafka: no answer in time: %w", err)
	}
	return fmt.Errorf("kafka: %w", err)
}

// Fatal reports whether err is a failure only the operator can fix
// (credentials, certificates, ACLs): loops stop on it instead of retrying.
func Fatal(err error) bool {
	e := Explain(err)
	return errors.Is(e, ErrAuthentication) || errors.Is(e, ErrUntrusted) || errors.Is(e, ErrCertRefused) ||
		errors.Is(e, ErrNotTLS) || errors.Is(e, ErrNotAuthorized)
}
