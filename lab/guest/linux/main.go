// ferry-guest: the lab's Linux guest workload (`agent`, PID 1's child inside the VM) and the host-side
// prober (`probe`, in its own network namespace). Standard library only; built static (CGO_ENABLED=0).
//
// agent: writes sequence-numbered, checksummed 512-byte records to a ring on /dev/vda with O_DIRECT|O_DSYNC
// (each write is on the disk, flushed, before the next one starts), optionally writes bulk data to the rest
// of the disk at a set rate, and answers UDP probes on :7007 with the last acknowledged record.
//
// probe: sends one UDP probe every 10 ms to each guest listed in a targets file and writes, per guest and
// per second, how many replies came back, the longest gap between two replies, and the last acknowledged
// record, as JSON lines.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ferry-guest agent | probe TARGETS OUTDIR")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "agent":
		agent()
	case "probe":
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: ferry-guest probe TARGETS OUTDIR")
			os.Exit(2)
		}
		probe(os.Args[2], os.Args[3])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
