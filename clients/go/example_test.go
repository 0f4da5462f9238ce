package tandem_test

// Examples shown in the package documentation and README.md. They are
// compiled by `go test` (so they stay in step with the generated code) but
// not run: they need a control plane and two clusters.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tandem "github.com/tandem-migrate/tandem/clients/go"
	tandemv1 "github.com/tandem-migrate/tandem/clients/go/tandemv1"
)

func ExampleConnect() {
	client, err := tandem.Connect("http://127.0.0.1:50051", os.Getenv("TANDEM_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	resp, err := client.Clusters.ListClusters(context.Background(), &tandemv1.ListClustersRequest{})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range resp.GetClusters() {
		fmt.Println(c.GetName(), c.GetLastProbe().GetVersion().GetNumber())
	}
}

func ExampleConnect_tls() {
	// https:// endpoints use TLS, verified against the system roots or, as
	// here, a private CA. Unary calls without a deadline get 10 s.
	client, err := tandem.Connect("https://tandem.internal:50051", os.Getenv("TANDEM_TOKEN"),
		tandem.WithCAFile("/etc/tandem/ca.pem"),
		tandem.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
}

func ExampleField() {
	client, err := tandem.Connect("http://127.0.0.1:50051", os.Getenv("TANDEM_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	_, err = client.Clusters.RegisterCluster(context.Background(), &tandemv1.RegisterClusterRequest{
		Name:      "old-cluster",
		Endpoints: []string{"ftp://es-old:9200"},
	})
	switch status.Code(err) {
	case codes.OK:
		fmt.Println("registered")
	case codes.InvalidArgument:
		// "endpoints[0]: ..." names the field to fix.
		fmt.Printf("fix %s: %s\n", tandem.Field(err), status.Convert(err).Message())
	case codes.AlreadyExists:
		fmt.Println("a cluster of that name is already registered")
	case codes.FailedPrecondition:
		fmt.Println("the probe failed:", status.Convert(err).Message())
	case codes.Unauthenticated:
		fmt.Println("wrong or missing token")
	default:
		log.Fatal(err)
	}
}

// A replication task from an old to a new cluster, created paused and then
// watched until it leaves the CREATED state.
func Example_createAndWatchTask() {
	ctx := context.Background()
	client, err := tandem.Connect("http://127.0.0.1:50051", os.Getenv("TANDEM_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	for name, url := range map[string]string{"es-old": "http://es-old:9200", "es-new": "http://es-new:9200"} {
		resp, err := client.Clusters.RegisterCluster(ctx, &tandemv1.RegisterClusterRequest{
			Name:      name,
			Endpoints: []string{url},
		})
		if err != nil {
			log.Fatalf("register %s: %v", name, err)
		}
		v := resp.GetCluster().GetLastProbe().GetVersion()
		fmt.Printf("%s: %s %s\n", name, v.GetDistribution(), v.GetNumber())
	}

	gateways, err := client.Gateways.ListGateways(ctx, &tandemv1.ListGatewaysRequest{})
	if err != nil {
		log.Fatal(err)
	}
	var gatewayIDs []string
	for _, gw := range gateways.GetGateways() {
		gatewayIDs = append(gatewayIDs, gw.GetId())
	}

	created, err := client.Replication.CreateTask(ctx, &tandemv1.CreateTaskRequest{
		Name:        "move-to-new",
		Primary:     &tandemv1.ClusterRef{ClusterName: "es-old"},
		Backup:      &tandemv1.ClusterRef{ClusterName: "es-new"},
		GatewayIds:  gatewayIDs,
		StartPaused: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	task := created.GetTask()

	// Watch streams have no default deadline: bound them with the context.
	watchCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	stream, err := client.Replication.WatchTask(watchCtx, &tandemv1.WatchTaskRequest{TaskId: task.GetId()})
	if err != nil {
		log.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		switch update := msg.GetUpdate().(type) {
		case *tandemv1.WatchTaskResponse_Task:
			fmt.Println("state:", update.Task.GetState())
			if update.Task.GetState() != tandemv1.TaskState_TASK_STATE_CREATED {
				return
			}
		case *tandemv1.WatchTaskResponse_Event:
			fmt.Println("event:", update.Event.GetReason(), update.Event.GetMessage())
		case *tandemv1.WatchTaskResponse_LagSample:
			fmt.Println("lag:", update.LagSample.GetLagRecords(), "records")
		}
	}
}
