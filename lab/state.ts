/** <home>/lab/state.json: what labUp built (hosts, VMs), its schema, reading and writing it. */
import * as fs from 'node:fs';
import { z } from 'zod';
import { LAB_DEFAULT_PREFIX, statePath } from './naming';
import { LabError } from './types';

const StateHostSchema = z.object({
  name: z.string(),
  address: z.string(),
  uri: z.string(),
  netns: z.string(),
  hostUuid: z.string(),
});
const StateVmSchema = z.object({
  name: z.string(),
  uuid: z.string(),
  memoryMiB: z.number(),
  diskPath: z.string(),
  diskMiB: z.number(),
  randomDataMiB: z.number(),
  createdOn: z.string(),
  /** The guest: labAddVm's boot-sector program, or a Linux guest (labUp --guest linux, labAddVm); absent: nothing bootable. */
  guest: z
    .discriminatedUnion('kind', [
      z.object({ kind: z.literal('dirty'), regionMiB: z.number(), pagesPerSec: z.union([z.number(), z.literal('max')]) }),
      z.object({
        kind: z.literal('linux'),
        ip: z.string(),
        recordsPerSec: z.number().optional(),
        writeMiBPerSec: z.number().optional(),
      }),
    ])
    .optional(),
});
/** A Linux guest defined outside the lab (e.g. with plain virsh by a test) that the prober watches too. */
const ProbedGuestSchema = z.object({ name: z.string(), uuid: z.string(), ip: z.string() });
const StateSchema = z.object({
  version: z.literal(1),
  home: z.string(),
  /** Absent in state files written before labs had prefixes: those are the default lab. */
  prefix: z.string().default(LAB_DEFAULT_PREFIX),
  subnet: z.string(),
  bridge: z.string(),
  /** `ferry lab up --tls`: TLS-only daemons, certificates in <home>/lab/pki (lab/pki.ts). Absent: TCP. */
  tls: z.boolean().default(false),
  hosts: z.array(StateHostSchema),
  vms: z.array(StateVmSchema),
  /** Linux guests the prober watches besides the lab's own (labProbeGuest). */
  probedGuests: z.array(ProbedGuestSchema).default([]),
  createdAt: z.string(),
});
export type StateHost = z.infer<typeof StateHostSchema>;
export type StateVm = z.infer<typeof StateVmSchema>;
export type LabState = z.infer<typeof StateSchema>;

export function readState(home: string): LabState | null {
  return readStateFile(statePath(home));
}

export function readStateFile(file: string): LabState | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const r = StateSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export function writeState(home: string, s: LabState): void {
  const file = statePath(home);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

export function requireHost(s: LabState | null, host: string): StateHost {
  const h = s?.hosts.find((x) => x.name === host);
  if (!h) throw new LabError(`no lab host ${host} (is the lab up?)`);
  return h;
}
