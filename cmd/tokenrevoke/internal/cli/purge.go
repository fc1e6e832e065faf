package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/snapshot"
)

type purgeResult struct {
	Stream          string `json:"stream"`
	Purged          uint64 `json:"purged"`
	SnapshotStream  string `json:"snapshotStream"`
	SnapshotsPurged uint64 `json:"snapshotsPurged"`
}

func (a *app) purgeCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete every revocation: purge the stream and its snapshot stream together",
		Long: `Purge the revocation stream and <stream>_SNAPSHOTS, so that neither a replay nor a
snapshot brings the revocations back to a new gateway. The snapshot stream is purged
first and again after the revocation stream (a gateway may write a snapshot in
between).

Gateways that are running keep what they already hold until it expires or they
restart. On a terminal the command asks you to type the stream name; elsewhere it
needs --force.`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := a.needStream("purge"); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			c := a.conn
			st, info, err := a.revocationStream(ctx, s, false)
			if err != nil {
				return err
			}
			snapName := snapshot.StreamName(c.stream)
			gctx, cancel := context.WithTimeout(ctx, c.timeout)
			snap, err := s.js.Stream(gctx, snapName)
			cancel()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				snap, err = nil, nil
			}
			if err != nil {
				return fmt.Errorf("stream %s: %v", snapName, err)
			}
			if !force {
				if !isTerminal(a.env.Stdin) {
					return usageErr("purge deletes every revocation in %s: confirm on a terminal or pass --force", c.stream)
				}
				fmt.Fprintf(a.stderr(), "This deletes all %d revocations in stream %s and every snapshot in %s.\nType the stream name to confirm: ", info.State.Msgs, c.stream, snapName)
				answer, _ := bufio.NewReader(a.env.Stdin).ReadString('\n')
				if strings.TrimSpace(answer) != c.stream {
					return fail(ExitError, "not confirmed; nothing purged")
				}
			}
			res := purgeResult{Stream: c.stream, SnapshotStream: snapName}
			purgeSnap := func() error {
				if snap == nil {
					return nil
				}
				n, err := purgeCount(ctx, snap, c.timeout)
				res.SnapshotsPurged += n
				if err != nil {
					return fmt.Errorf("purging %s: %v", snapName, err)
				}
				return nil
			}
			if err := purgeSnap(); err != nil {
				return err
			}
			n, err := purgeCount(ctx, st, c.timeout)
			res.Purged = n
			if err != nil {
				return fmt.Errorf("purging %s: %v (snapshots already purged)", c.stream, err)
			}
			if err := purgeSnap(); err != nil {
				return err
			}
			if a.json {
				a.printJSON(res)
			} else {
				fmt.Fprintf(a.stdout(), "purged %d message(s) from %s and %d from %s\n", res.Purged, c.stream, res.SnapshotsPurged, snapName)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "purge without asking")
	return cmd
}

// purgeCount purges st and returns how many messages it held just before.
func purgeCount(ctx context.Context, st jetstream.Stream, timeout time.Duration) (uint64, error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := st.Info(pctx)
	if err != nil {
		return 0, err
	}
	if err := st.Purge(pctx); err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}
