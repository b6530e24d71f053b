/**
 * What crosses a lab host's wire: a raw packet capture (AF_PACKET, python3 — root only) on the root-side veth of
 * a host, counting byte patterns in every frame until stopped. Used to prove a migration stream encrypted:
 * the guest's own bytes (and QEMU's stream magic "QEVM") appear in a plain stream and never in a TLS one.
 */
import { startProcess } from '../../hypervisor/exec';

const SCRIPT = `
import json, signal, socket, sys
patterns = [p.encode() for p in sys.argv[2:]]
counts = {p: 0 for p in patterns}
frames = 0
stop = False
def done(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, done)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((sys.argv[1], 0))
s.settimeout(0.1)
print("ready", flush=True)
tail = b""
width = max(len(p) for p in patterns)
while not stop:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    frames += 1
    buf = tail + frame
    for p in patterns:
        counts[p] += buf.count(p)
    tail = frame[-(width - 1):]
print(json.dumps({"frames": frames, "counts": {p.decode(): n for p, n in counts.items()}}), flush=True)
`;

export interface WireCounts {
  frames: number;
  counts: Record<string, number>;
}

export interface WireSniffer {
  /** Stops the capture and returns how often each pattern was seen. */
  stop(): Promise<WireCounts>;
}

export async function sniffWire(ifname: string, patterns: readonly string[]): Promise<WireSniffer> {
  const p = startProcess('python3', ['-c', SCRIPT, ifname, ...patterns]);
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 10_000;
  while (!out.startsWith('ready')) {
    if (p.exitCode !== null || Date.now() > deadline) throw new Error(`packet capture on ${ifname} did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    async stop() {
      p.kill('SIGTERM');
      await exited;
      const last = out.trim().split('\n').pop() ?? '';
      try {
        return JSON.parse(last) as WireCounts;
      } catch {
        throw new Error(`packet capture on ${ifname} ended without counts: ${err}`);
      }
    },
  };
}
