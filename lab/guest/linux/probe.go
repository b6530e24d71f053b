package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ProbeInterval is how often each guest is probed.
const ProbeInterval = 10 * time.Millisecond

type target struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
}

// Second is one line of <outdir>/<name>.jsonl: what one second of probing saw.
type Second struct {
	T        int64   `json:"t"` // unix ms at the start of the second
	Sent     int     `json:"sent"`
	Recv     int     `json:"recv"`
	MaxGapMs float64 `json:"maxGapMs"` // longest time between two replies, for replies that arrived in this second
	LastAck  int64   `json:"lastAck"`  // the guest's last acknowledged record (-1: none yet, -2: no reply)
}

type tracker struct {
	name   string
	addr   *net.UDPAddr
	cur    Second
	lastRx time.Time
	out    *os.File
}

func (t *tracker) flush(second int64) {
	if t.cur.T != 0 {
		line, _ := json.Marshal(t.cur)
		t.out.Write(append(line, '\n'))
	}
	ack := t.cur.LastAck
	if t.cur.T == 0 {
		ack = -2
	}
	t.cur = Second{T: second, LastAck: ack}
}

func readTargets(file string) []target {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var ts []target
	if json.Unmarshal(raw, &ts) != nil {
		return nil
	}
	return ts
}

func probe(targetsFile, outDir string) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	byIP := map[string]*tracker{}
	var modTime time.Time
	reload := func() {
		st, err := os.Stat(targetsFile)
		if err != nil || st.ModTime().Equal(modTime) {
			return
		}
		modTime = st.ModTime()
		want := map[string]bool{}
		for _, t := range readTargets(targetsFile) {
			want[t.IP] = true
			if _, ok := byIP[t.IP]; ok {
				continue
			}
			f, err := os.OpenFile(filepath.Join(outDir, t.Name+".jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				continue
			}
			byIP[t.IP] = &tracker{name: t.Name, addr: &net.UDPAddr{IP: net.ParseIP(t.IP), Port: UdpPort}, out: f, cur: Second{LastAck: -2}}
		}
		for ip, t := range byIP {
			if !want[ip] {
				t.out.Close()
				delete(byIP, ip)
			}
		}
	}
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil || n < 32 {
				continue
			}
			now := time.Now()
			mu.Lock()
			if t, ok := byIP[from.IP.String()]; ok {
				if !t.lastRx.IsZero() {
					if gap := float64(now.Sub(t.lastRx).Microseconds()) / 1000; gap > t.cur.MaxGapMs {
						t.cur.MaxGapMs = gap
					}
				}
				t.lastRx = now
				t.cur.Recv++
				t.cur.LastAck = int64(binary.LittleEndian.Uint64(buf[8:16]))
			}
			mu.Unlock()
		}
	}()
	msg := make([]byte, 8)
	tick := time.NewTicker(ProbeInterval)
	var n uint64
	for now := range tick.C {
		second := now.UnixMilli() / 1000 * 1000
		mu.Lock()
		if n%100 == 0 {
			reload()
		}
		for _, t := range byIP {
			if t.cur.T != second {
				t.flush(second)
			}
			binary.LittleEndian.PutUint64(msg, n)
			conn.WriteToUDP(msg, t.addr)
			t.cur.Sent++
		}
		mu.Unlock()
		n++
	}
}
