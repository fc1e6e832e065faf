// Command tokenrevoke operates tokenrevoke gateways' revocations over NATS: revoke
// tokens, sessions and subjects, import in bulk, check, watch, snapshot and purge.
// See README.md in this directory.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/cli"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		// The first signal lets the command finish cleanly (import saves its state);
		// a second one ends the process at once.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancel()
	}()
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	cancel()
	os.Exit(code)
}
