package tandem_test

// Smoke tests against a real control plane. They run when
// TANDEM_SDK_ENDPOINT is set (http://host:port), together with
// TANDEM_SDK_TOKEN and TANDEM_SDK_CLUSTER_URL (an Elasticsearch 7.x node the
// control plane can reach); with TANDEM_SDK_ENDPOINT unset they are skipped.
// Once it is set, any misbehaviour or missing variable fails them.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tandem "github.com/tandem-migrate/tandem/clients/go"
	tandemv1 "github.com/tandem-migrate/tandem/clients/go/tandemv1"
)

type smokeEnv struct {
	endpoint, token, clusterURL string
}

func smoke(t *testing.T) smokeEnv {
	t.Helper()
	env := smokeEnv{
		endpoint:   os.Getenv("TANDEM_SDK_ENDPOINT"),
		token:      os.Getenv("TANDEM_SDK_TOKEN"),
		clusterURL: os.Getenv("TANDEM_SDK_CLUSTER_URL"),
	}
	if env.endpoint == "" {
		t.Skip("TANDEM_SDK_ENDPOINT is not set: no control plane to test against")
	}
	if env.token == "" || env.clusterURL == "" {
		t.Fatal("TANDEM_SDK_ENDPOINT is set, so TANDEM_SDK_TOKEN and TANDEM_SDK_CLUSTER_URL must be set too")
	}
	return env
}

func connect(t *testing.T, endpoint, token string) *tandem.Client {
	t.Helper()
	client, err := tandem.Connect(endpoint, token, tandem.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatalf("Connect(%q): %v", endpoint, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func TestSmokeAWrongOrMissingTokenIsUnauthenticated(t *testing.T) {
	env := smoke(t)
	for _, token := range []string{"wrong-" + env.token, ""} {
		client := connect(t, env.endpoint, token)
		_, err := client.Clusters.ListClusters(context.Background(), &tandemv1.ListClustersRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("ListClusters with token %q: got %v, want UNAUTHENTICATED", redact(token), err)
		}
		_, err = client.Queues.GetQueueStats(context.Background(), &tandemv1.GetQueueStatsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("GetQueueStats with token %q: got %v, want UNAUTHENTICATED", redact(token), err)
		}
	}
}

func TestSmokeABadClusterEndpointIsAnArgumentErrorNamingTheField(t *testing.T) {
	env := smoke(t)
	client := connect(t, env.endpoint, env.token)
	resp, err := client.Clusters.RegisterCluster(context.Background(), &tandemv1.RegisterClusterRequest{
		Name:      uniqueName("bad"),
		Endpoints: []string{"ftp://x"},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("RegisterCluster(ftp://x): got %v (response %v), want INVALID_ARGUMENT", err, resp)
	}
	if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "endpoints[0]") {
		t.Fatalf("RegisterCluster(ftp://x): message %q does not start with endpoints[0]", msg)
	}
	if field := tandem.Field(err); field != "endpoints[0]" {
		t.Fatalf("Field(%v) = %q, want endpoints[0]", err, field)
	}
}

func TestSmokeAClusterIsProbedFoundListedAndDeleted(t *testing.T) {
	env := smoke(t)
	client := connect(t, env.endpoint, env.token)
	ctx := context.Background()
	name := uniqueName("es7")

	reg, err := client.Clusters.RegisterCluster(ctx, &tandemv1.RegisterClusterRequest{
		Name:        name,
		Description: "Go SDK smoke test",
		Labels:      map[string]string{"sdk": "go"},
		Endpoints:   []string{env.clusterURL},
	})
	if err != nil {
		t.Fatalf("RegisterCluster(%s): %v", env.clusterURL, err)
	}
	cluster := reg.GetCluster()
	id := cluster.GetId()
	if id == "" {
		t.Fatalf("RegisterCluster returned a cluster without an id: %v", cluster)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_, _ = client.Clusters.DeleteCluster(context.Background(), &tandemv1.DeleteClusterRequest{ClusterId: id})
		}
	})
	if cluster.GetName() != name {
		t.Errorf("registered cluster is named %q, want %q", cluster.GetName(), name)
	}
	probe := cluster.GetLastProbe()
	if !probe.GetReachable() {
		t.Errorf("probe says the cluster is unreachable: %v", probe)
	}
	version := probe.GetVersion()
	if version.GetDistribution() != tandemv1.Distribution_DISTRIBUTION_ELASTICSEARCH {
		t.Errorf("probed distribution = %v, want DISTRIBUTION_ELASTICSEARCH", version.GetDistribution())
	}
	if !strings.HasPrefix(version.GetNumber(), "7.") || version.GetMajor() != 7 {
		t.Errorf("probed version = %q (major %d), want 7.x", version.GetNumber(), version.GetMajor())
	}

	got, err := client.Clusters.GetCluster(ctx, &tandemv1.GetClusterRequest{ClusterId: id})
	if err != nil {
		t.Fatalf("GetCluster(%s): %v", id, err)
	}
	if got.GetCluster().GetName() != name || got.GetCluster().GetLabels()["sdk"] != "go" {
		t.Errorf("GetCluster(%s) = %v, want the cluster %q labelled sdk=go", id, got.GetCluster(), name)
	}
	if got.GetCluster().GetLastProbe().GetVersion().GetNumber() != version.GetNumber() {
		t.Errorf("GetCluster(%s) version %q differs from the registration's %q", id,
			got.GetCluster().GetLastProbe().GetVersion().GetNumber(), version.GetNumber())
	}

	if !listed(ctx, t, client, &tandemv1.ListClustersRequest{NameContains: name}, id) {
		t.Errorf("ListClusters(name_contains=%q) does not list %s", name, id)
	}
	if !listed(ctx, t, client, &tandemv1.ListClustersRequest{PageSize: 1000}, id) {
		t.Errorf("ListClusters (every page) does not list %s", id)
	}

	if _, err := client.Clusters.DeleteCluster(ctx, &tandemv1.DeleteClusterRequest{ClusterId: id}); err != nil {
		t.Fatalf("DeleteCluster(%s): %v", id, err)
	}
	deleted = true
	_, err = client.Clusters.GetCluster(ctx, &tandemv1.GetClusterRequest{ClusterId: id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetCluster(%s) after DeleteCluster: got %v, want NOT_FOUND", id, err)
	}
}

func TestSmokeTheFleetAndQueueStatsAnswer(t *testing.T) {
	env := smoke(t)
	client := connect(t, env.endpoint, env.token)
	ctx := context.Background()

	gateways, err := client.Gateways.ListGateways(ctx, &tandemv1.ListGatewaysRequest{})
	if err != nil {
		t.Fatalf("ListGateways: %v", err)
	}
	for _, gw := range gateways.GetGateways() {
		if gw.GetId() == "" {
			t.Errorf("ListGateways returned a gateway without an id: %v", gw)
		}
	}
	stats, err := client.Queues.GetQueueStats(ctx, &tandemv1.GetQueueStatsRequest{})
	if err != nil {
		t.Fatalf("GetQueueStats: %v", err)
	}
	if stats == nil {
		t.Fatal("GetQueueStats returned no response")
	}
	t.Logf("%d gateway(s); queue stats for %d task(s)", len(gateways.GetGateways()), len(stats.GetTasks()))
}

// listed pages through ListClusters and reports whether id is among them.
func listed(ctx context.Context, t *testing.T, client *tandem.Client, req *tandemv1.ListClustersRequest, id string) bool {
	t.Helper()
	for page := 0; page < 100; page++ {
		resp, err := client.Clusters.ListClusters(ctx, req)
		if err != nil {
			t.Fatalf("ListClusters(%v): %v", req, err)
		}
		for _, c := range resp.GetClusters() {
			if c.GetId() == id {
				return true
			}
		}
		if resp.GetNextPageToken() == "" {
			return false
		}
		req.PageToken = resp.GetNextPageToken()
	}
	t.Fatalf("ListClusters(%v): more than 100 pages", req)
	return false
}

// uniqueName is a cluster name no other run uses: lowercase, digits and '-'.
func uniqueName(kind string) string {
	return fmt.Sprintf("sdk-go-%s-%d-%d", kind, time.Now().UnixNano(), os.Getpid())
}

func redact(token string) string {
	if len(token) <= 8 {
		return token
	}
	return token[:8] + "..."
}
