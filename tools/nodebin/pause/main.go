// Command pause is the sandbox ("pause") process of every pod on the test
// cluster's real node: it holds the pod's namespaces, reaps orphaned children
// (it is PID 1 of the pod when the PID namespace is shared) and exits on
// SIGINT/SIGTERM. Built here because no registry image can be pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
