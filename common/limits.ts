/**
 * Concurrency limits checked when a migration claims its target. Defaults from the field: KubeVirt allows
 * 2 outbound migrations per node and 5 per cluster; a host receiving a migration is not a candidate for
 * another (inbound 1, the patent's rule). Sandbox-safe.
 */
export interface MigrationLimits {
  /** Migrations leaving one source host at once. */
  maxOutboundPerHost: number;
  /** Migrations arriving at one target host at once. */
  maxInboundPerHost: number;
  /** Migrations in flight in the whole fleet. */
  maxInFlight: number;
}

export const DEFAULT_LIMITS: Readonly<MigrationLimits> = Object.freeze({
  maxOutboundPerHost: 2,
  maxInboundPerHost: 1,
  maxInFlight: 5,
});

export const MAX_LIMIT = 100;
