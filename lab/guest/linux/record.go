package main

import (
	"encoding/binary"
	"hash/crc32"
)

// The record ring on the guest's first disk: RecordBytes-byte records in slots [RingStart, RingStart+RingSlots*RecordBytes).
// Record layout (little-endian): magic "FERRYREC" | seq u64 | unix nanos u64 | boot u64 | payload | crc32c u32 at 508.
// The payload is a function of seq, so a record copied to the wrong slot or mixed with another fails its check.
const (
	RecordBytes = 512
	RingStart   = 1 << 20
	RingSlots   = 65536 // 32 MiB
	BulkStart   = RingStart + RingSlots*RecordBytes
	Magic       = "FERRYREC"
	UdpPort     = 7007
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeRecord(buf []byte, seq, nanos, boot uint64) {
	copy(buf[0:8], Magic)
	binary.LittleEndian.PutUint64(buf[8:16], seq)
	binary.LittleEndian.PutUint64(buf[16:24], nanos)
	binary.LittleEndian.PutUint64(buf[24:32], boot)
	x := seq*0x9E3779B97F4A7C15 + 1
	for i := 32; i < 504; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(buf[i:i+8], x)
	}
	binary.LittleEndian.PutUint32(buf[504:508], 0)
	binary.LittleEndian.PutUint32(buf[508:512], crc32.Checksum(buf[0:508], castagnoli))
}

// decodeRecord returns the record's seq when the slot holds a valid record.
func decodeRecord(buf []byte) (uint64, bool) {
	if string(buf[0:8]) != Magic {
		return 0, false
	}
	if binary.LittleEndian.Uint32(buf[508:512]) != crc32.Checksum(buf[0:508], castagnoli) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(buf[8:16]), true
}

func slotOffset(seq uint64) int64 { return RingStart + int64(seq%RingSlots)*RecordBytes }
