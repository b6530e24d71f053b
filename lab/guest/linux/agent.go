package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// aligned returns a zeroed n-byte buffer aligned to 4096 bytes (O_DIRECT needs it).
func aligned(n int) []byte {
	b := make([]byte, n+4096)
	off := int(4096-uintptr(unsafe.Pointer(&b[0]))%4096) % 4096
	return b[off : off+n]
}

func cmdline() map[string]string {
	out := map[string]string{}
	raw, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(raw)) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "ferry.") {
			out[strings.TrimPrefix(k, "ferry.")] = v
		}
	}
	return out
}

func numArg(args map[string]string, key string, def float64) float64 {
	if v, ok := args[key]; ok {
		if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
			return n
		}
	}
	return def
}

func logf(format string, a ...any) { fmt.Printf("ferry-guest: "+format+"\n", a...) }

// lastOnDisk scans the ring for the highest valid seq (-1 when the ring is empty).
func lastOnDisk(f *os.File) int64 {
	buf := aligned(1 << 20)
	last := int64(-1)
	for off := int64(RingStart); off < BulkStart; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err != nil && n == 0 {
			break
		}
		for i := 0; i+RecordBytes <= n; i += RecordBytes {
			if seq, ok := decodeRecord(buf[i : i+RecordBytes]); ok && int64(seq) > last {
				last = int64(seq)
			}
		}
	}
	return last
}

func agent() {
	args := cmdline()
	rate := numArg(args, "records", 100) // records per second
	bulkMiB := numArg(args, "write", 0)  // bulk MiB/s besides the records
	dev := "/dev/vda"
	if d, ok := args["disk"]; ok {
		dev = d
	}
	f, err := os.OpenFile(dev, os.O_RDWR|syscall.O_DIRECT|syscall.O_DSYNC, 0)
	if err != nil {
		logf("cannot open %s: %v", dev, err)
		os.Exit(1)
	}
	boot := uint64(time.Now().UnixNano())
	next := uint64(lastOnDisk(f) + 1)
	logf("records from seq %d at %.0f/s on %s, bulk %.0f MiB/s, udp :%d", next, rate, dev, bulkMiB, UdpPort)
	var acked atomic.Int64
	acked.Store(int64(next) - 1)
	var written atomic.Uint64
	var bulk atomic.Uint64
	go serveProbes(&acked, &written, &bulk)
	if peer, ok := args["peer"]; ok {
		go keepAlive(peer)
	}
	if bulkMiB > 0 {
		go bulkWriter(dev, bulkMiB, &bulk)
	}
	go func() {
		for range time.Tick(5 * time.Second) {
			logf("acked %d, bulk %d MiB", acked.Load(), bulk.Load()>>20)
		}
	}()
	rec := aligned(RecordBytes)
	period := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(period)
	for seq := next; ; seq++ {
		<-tick.C
		encodeRecord(rec, seq, uint64(time.Now().UnixNano()), boot)
		for {
			if _, err := f.WriteAt(rec, slotOffset(seq)); err == nil {
				break
			} else {
				logf("write of record %d failed, retrying: %v", seq, err)
				time.Sleep(100 * time.Millisecond)
			}
		}
		// O_DSYNC: WriteAt returned after the device acknowledged the flush. Only now does it count.
		acked.Store(int64(seq))
		written.Add(1)
	}
}

// bulkWriter writes 1 MiB blocks of pseudo-random data over the disk past the ring at mibPerSec.
func bulkWriter(dev string, mibPerSec float64, total *atomic.Uint64) {
	f, err := os.OpenFile(dev, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		logf("bulk: cannot open %s: %v", dev, err)
		return
	}
	size, _ := f.Seek(0, 2)
	block := aligned(1 << 20)
	for i := range block {
		block[i] = byte(i*7 + 3)
	}
	start := time.Now()
	off := int64(BulkStart)
	for n := uint64(0); ; n++ {
		due := start.Add(time.Duration(float64(n) / mibPerSec * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if off+int64(len(block)) > size {
			off = BulkStart
		}
		binary.LittleEndian.PutUint64(block[0:8], n)
		if _, err := f.WriteAt(block, off); err != nil {
			logf("bulk write failed: %v", err)
			time.Sleep(time.Second)
			continue
		}
		off += int64(len(block))
		total.Add(uint64(len(block)))
	}
}

// Probe reply: the probe's 8 bytes back | last acked seq (i64) | records written since boot | bulk bytes.
func serveProbes(acked *atomic.Int64, written, bulk *atomic.Uint64) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: UdpPort})
	if err != nil {
		logf("udp: %v", err)
		return
	}
	in := make([]byte, 64)
	out := make([]byte, 32)
	for {
		n, from, err := conn.ReadFromUDP(in)
		if err != nil || n < 8 {
			continue
		}
		copy(out[0:8], in[0:8])
		binary.LittleEndian.PutUint64(out[8:16], uint64(acked.Load()))
		binary.LittleEndian.PutUint64(out[16:24], written.Load())
		binary.LittleEndian.PutUint64(out[24:32], bulk.Load())
		conn.WriteToUDP(out, from)
	}
}

// keepAlive sends a small UDP datagram to the prober's address every 200 ms (nothing listens on that port), as a
// real guest's background traffic would: switches then learn where the guest is within 200 ms even when the
// announcement after a migration was missed, instead of forwarding to the old host until their entry ages out.
func keepAlive(peer string) {
	conn, err := net.Dial("udp4", net.JoinHostPort(peer, strconv.Itoa(UdpPort+1)))
	if err != nil {
		logf("keepalive: %v", err)
		return
	}
	for range time.Tick(200 * time.Millisecond) {
		conn.Write([]byte{0})
	}
}
