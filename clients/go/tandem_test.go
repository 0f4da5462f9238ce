package tandem

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tandemv1 "github.com/tandem-migrate/tandem/clients/go/tandemv1"
)

// recordingClusters answers GetCluster with the authorization header and the
// deadline it received, so tests can see what Connect sends.
type recordingClusters struct {
	tandemv1.UnimplementedClusterServiceServer
	authorization chan []string
	deadline      chan time.Duration
}

func (s *recordingClusters) GetCluster(ctx context.Context, req *tandemv1.GetClusterRequest) (*tandemv1.GetClusterResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.authorization <- md.Get("authorization")
	if d, ok := ctx.Deadline(); ok {
		s.deadline <- time.Until(d)
	} else {
		s.deadline <- 0
	}
	if req.GetClusterId() == "" {
		return nil, status.Error(codes.InvalidArgument, "cluster_id: required")
	}
	return &tandemv1.GetClusterResponse{Cluster: &tandemv1.Cluster{Id: req.GetClusterId()}}, nil
}

// serve starts an in-process ClusterService on a loopback port.
func serve(t *testing.T) (*recordingClusters, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rec := &recordingClusters{authorization: make(chan []string, 1), deadline: make(chan time.Duration, 1)}
	tandemv1.RegisterClusterServiceServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return rec, "http://" + lis.Addr().String()
}

func TestEveryCallCarriesTheBearerTokenAndADefaultDeadline(t *testing.T) {
	rec, endpoint := serve(t)
	client, err := Connect(endpoint, "s3cret-token", WithTimeout(7*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	resp, err := client.Clusters.GetCluster(context.Background(), &tandemv1.GetClusterRequest{ClusterId: "c1"})
	if err != nil {
		t.Fatalf("GetCluster: %v", err)
	}
	if resp.GetCluster().GetId() != "c1" {
		t.Fatalf("GetCluster returned %v", resp)
	}
	if got := <-rec.authorization; len(got) != 1 || got[0] != "Bearer s3cret-token" {
		t.Fatalf("authorization metadata = %q, want [\"Bearer s3cret-token\"]", got)
	}
	if d := <-rec.deadline; d <= 5*time.Second || d > 7*time.Second {
		t.Fatalf("server saw a deadline %s away, want about 7s", d)
	}
}

func TestACallerDeadlineIsKept(t *testing.T) {
	rec, endpoint := serve(t)
	client, err := Connect(endpoint, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := client.Clusters.GetCluster(ctx, &tandemv1.GetClusterRequest{ClusterId: "c1"}); err != nil {
		t.Fatal(err)
	}
	<-rec.authorization
	if d := <-rec.deadline; d <= DefaultTimeout {
		t.Fatalf("server saw a deadline %s away, want the caller's 2m", d)
	}
}

func TestAnEmptyTokenSendsNoAuthorization(t *testing.T) {
	rec, endpoint := serve(t)
	client, err := Connect(endpoint, "", WithTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Clusters.GetCluster(context.Background(), &tandemv1.GetClusterRequest{ClusterId: "c1"}); err != nil {
		t.Fatal(err)
	}
	if got := <-rec.authorization; len(got) != 0 {
		t.Fatalf("authorization metadata = %q, want none", got)
	}
	if d := <-rec.deadline; d != 0 {
		t.Fatalf("server saw a deadline %s away, want none with WithTimeout(0)", d)
	}
}

func TestFieldNamesTheOffendingRequestField(t *testing.T) {
	rec, endpoint := serve(t)
	client, err := Connect(endpoint, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = client.Clusters.GetCluster(context.Background(), &tandemv1.GetClusterRequest{})
	<-rec.authorization
	<-rec.deadline
	if status.Code(err) != codes.InvalidArgument || Field(err) != "cluster_id" {
		t.Fatalf("err = %v (field %q), want INVALID_ARGUMENT on cluster_id", err, Field(err))
	}

	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.InvalidArgument, "endpoints[0]: scheme must be http or https"), "endpoints[0]"},
		{status.Error(codes.NotFound, "cluster 42 not found"), ""},
		{status.Error(codes.Internal, "no colon"), ""},
		{errors.New("endpoints[0]: not a status"), ""},
		{nil, ""},
	} {
		if got := Field(tc.err); got != tc.want {
			t.Errorf("Field(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestEndpointsMustBeHTTPOrHTTPSURLs(t *testing.T) {
	for _, tc := range []struct {
		endpoint, target string
		tls              bool
	}{
		{"http://127.0.0.1:50051", "127.0.0.1:50051", false},
		{"http://localhost", "localhost:80", false},
		{"https://cp.example.com", "cp.example.com:443", true},
		{"https://cp.example.com:8443/", "cp.example.com:8443", true},
		{"http://[::1]:50051", "[::1]:50051", false},
	} {
		target, useTLS, err := parseEndpoint(tc.endpoint)
		if err != nil || target != tc.target || useTLS != tc.tls {
			t.Errorf("parseEndpoint(%q) = %q, %v, %v; want %q, %v", tc.endpoint, target, useTLS, err, tc.target, tc.tls)
		}
	}
	for _, bad := range []string{"127.0.0.1:50051", "ftp://x:21", "http://", "http://h:1/api", ""} {
		if _, err := Connect(bad, "t"); err == nil {
			t.Errorf("Connect(%q) succeeded, want an endpoint error", bad)
		}
	}
}

func TestOptionsAreChecked(t *testing.T) {
	if _, err := Connect("http://127.0.0.1:1", "t", WithCAFile("ca.pem")); err == nil {
		t.Error("a CA file with an http:// endpoint was accepted")
	}
	if _, err := Connect("https://127.0.0.1:1", "t", WithCAFile(filepath.Join(t.TempDir(), "missing.pem"))); err == nil {
		t.Error("a missing CA file was accepted")
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect("https://127.0.0.1:1", "t", WithCAFile(notPEM)); err == nil {
		t.Error("a CA file without a certificate was accepted")
	}
	if _, err := Connect("http://127.0.0.1:1", "two words"); err == nil {
		t.Error("a token with a space was accepted")
	}
	if _, err := Connect("http://127.0.0.1:1", "t", WithTimeout(-time.Second)); err == nil {
		t.Error("a negative timeout was accepted")
	}
	client, err := Connect("https://127.0.0.1:1", "t")
	if err != nil {
		t.Fatalf("https with system roots: %v", err)
	}
	client.Close()
}
