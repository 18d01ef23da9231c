// Command kubelet is the upstream kubelet (k8s.io/kubernetes v1.36.3, the
// same pin as the test control plane) built from our own module, for the
// test cluster's real node only. It is never shipped with the operator.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
