// Package tandem is the Go SDK for the Tandem control plane.
//
// The generated messages and gRPC stubs of the tandem.v1 contract live in the
// sub-package [github.com/tandem-migrate/tandem/clients/go/tandemv1]; this
// package adds [Connect], which opens one connection and returns a [Client]
// holding a typed stub for every service, with the control plane's bearer
// token attached to every call and a default deadline on unary calls.
//
//	client, err := tandem.Connect("http://127.0.0.1:50051", os.Getenv("TANDEM_TOKEN"))
//	if err != nil {
//		return err
//	}
//	defer client.Close()
//	resp, err := client.Clusters.ListClusters(ctx, &tandemv1.ListClustersRequest{})
//
// Errors are gRPC statuses: read the code with [status.Code] and, for
// INVALID_ARGUMENT, the offending request field with [Field].
package tandem

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tandemv1 "github.com/tandem-migrate/tandem/clients/go/tandemv1"
)

// DefaultTimeout is the deadline given to a unary call whose context has
// none. Streaming calls (the Watch RPCs, AgentStream) get no default
// deadline: they are meant to stay open.
const DefaultTimeout = 30 * time.Second

// Client holds a connection to the control plane and a stub for each
// tandem.v1 service, all sending the bearer token given to [Connect]. It is
// safe for concurrent use; Close it when done.
type Client struct {
	conn *grpc.ClientConn

	// Clusters registers and probes Elasticsearch / OpenSearch clusters.
	Clusters tandemv1.ClusterServiceClient
	// Gateways lists, watches, drains and removes gateways.
	Gateways tandemv1.GatewayServiceClient
	// Replication drives replication tasks (create, start, cutover, rollback).
	Replication tandemv1.ReplicationServiceClient
	// Queues inspects and repairs the gateways' replay queues.
	Queues tandemv1.QueueServiceClient
	// Migrations runs full-migration jobs.
	Migrations tandemv1.MigrationServiceClient
	// Compare runs comparison jobs between two clusters.
	Compare tandemv1.CompareServiceClient
}

// Conn returns the underlying connection, for stubs of other services served
// on the same port (gRPC health, reflection). It does not carry the token:
// use the Client's fields for tandem.v1 calls.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Option configures [Connect].
type Option func(*options) error

type options struct {
	timeout     time.Duration
	tlsConfig   *tls.Config
	caFile      string
	dialOptions []grpc.DialOption
}

// WithTimeout sets the deadline of unary calls whose context has none
// (default [DefaultTimeout]). Zero leaves such calls without a deadline.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("timeout: must not be negative, got %s", d)
		}
		o.timeout = d
		return nil
	}
}

// WithCAFile trusts the PEM certificates in path (instead of the system
// roots) for an https:// endpoint.
func WithCAFile(path string) Option {
	return func(o *options) error {
		o.caFile = path
		return nil
	}
}

// WithTLSConfig sets the TLS configuration for an https:// endpoint (client
// certificates, custom verification). A CA file given with [WithCAFile] is
// added to a copy of it.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) error {
		o.tlsConfig = cfg
		return nil
	}
}

// WithDialOptions passes extra options to [grpc.NewClient], after the ones
// Connect sets (transport credentials, token, default deadline).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) error {
		o.dialOptions = append(o.dialOptions, opts...)
		return nil
	}
}

// Connect prepares a client for the control plane at endpoint, a URL with
// scheme, host and port: "http://host:port" for plaintext, "https://host:port"
// for TLS verified against the system roots (or [WithCAFile]). token is sent
// as "authorization: Bearer <token>" with every call; an empty token sends
// nothing (for a control plane run with --insecure-no-auth).
//
// Connect does not wait for the connection: it is established on the first
// call, and an unreachable control plane surfaces as an UNAVAILABLE status
// from that call.
func Connect(endpoint, token string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	target, useTLS, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var transport credentials.TransportCredentials
	if useTLS {
		cfg, err := o.tls()
		if err != nil {
			return nil, err
		}
		transport = credentials.NewTLS(cfg)
	} else {
		if o.caFile != "" || o.tlsConfig != nil {
			return nil, fmt.Errorf("endpoint: TLS options need an https:// endpoint, got %q", endpoint)
		}
		transport = insecure.NewCredentials()
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(transport)}
	if token = strings.TrimSpace(token); token != "" {
		creds, err := newBearerToken(token)
		if err != nil {
			return nil, err
		}
		dial = append(dial, grpc.WithPerRPCCredentials(creds))
	}
	if o.timeout > 0 {
		dial = append(dial, grpc.WithChainUnaryInterceptor(defaultDeadline(o.timeout)))
	}
	dial = append(dial, o.dialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	return &Client{
		conn:        conn,
		Clusters:    tandemv1.NewClusterServiceClient(conn),
		Gateways:    tandemv1.NewGatewayServiceClient(conn),
		Replication: tandemv1.NewReplicationServiceClient(conn),
		Queues:      tandemv1.NewQueueServiceClient(conn),
		Migrations:  tandemv1.NewMigrationServiceClient(conn),
		Compare:     tandemv1.NewCompareServiceClient(conn),
	}, nil
}

// parseEndpoint turns "http(s)://host[:port]" into a gRPC target "host:port"
// and whether to use TLS. The port defaults to 80 or 443 as in a browser.
func parseEndpoint(endpoint string) (target string, useTLS bool, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "", false, fmt.Errorf("endpoint: want http://host:port or https://host:port, got %q", endpoint)
	}
	port := ""
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port, useTLS = "443", true
	default:
		return "", false, fmt.Errorf("endpoint: scheme must be http or https, got %q", endpoint)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false, fmt.Errorf("endpoint: want only scheme, host and port, got %q", endpoint)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return net.JoinHostPort(u.Hostname(), port), useTLS, nil
}

// tls builds the client TLS configuration from the options.
func (o *options) tls() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.tlsConfig != nil {
		cfg = o.tlsConfig.Clone()
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: no PEM certificate in %s", o.caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// bearerToken sends "authorization: Bearer <token>" with every call. It is
// allowed over plaintext too, since the control plane is often reached over
// a loopback or private network without TLS.
type bearerToken struct{ header string }

func newBearerToken(token string) (bearerToken, error) {
	for _, r := range token {
		if r < 0x21 || r > 0x7e {
			return bearerToken{}, errors.New("token: must be printable ASCII without spaces")
		}
	}
	return bearerToken{header: "Bearer " + token}, nil
}

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": t.header}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

func (bearerToken) String() string { return "bearerToken(***)" }

// defaultDeadline gives unary calls without a deadline one of d.
func defaultDeadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Field returns the request field an error names, for example
// "endpoints[0]" for the INVALID_ARGUMENT status "endpoints[0]: scheme must
// be http or https". The control plane starts the message of every argument
// error with the offending field; Field returns "" for errors that are not
// gRPC statuses or whose message names no field.
func Field(err error) string {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return ""
	}
	field, _, found := strings.Cut(st.Message(), ": ")
	if !found || field == "" || strings.ContainsAny(field, " \t\n") {
		return ""
	}
	return field
}
