/**
 * grafana/dashboards/ferry.json: every panel has a query, and every metric a query names is one Ferry declares
 * (activities/, workflows/: createCounter / createHistogram / createGauge; a histogram exports _bucket, _sum and
 * _count) or one of Temporal's runtime metrics. test/workflow/metrics.test.ts checks the same names against
 * the worker's real Prometheus endpoint.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dashboardPanels, metricNames } from '../support/grafana';

const REPO = path.join(__dirname, '..', '..');

function declaredFerryMetrics(): Set<string> {
  const names = new Set<string>();
  for (const dir of ['activities', 'workflows', 'worker']) {
    for (const f of fs.readdirSync(path.join(REPO, dir), { recursive: true, encoding: 'utf8' }).filter((x) => x.endsWith('.ts'))) {
      const src = fs.readFileSync(path.join(REPO, dir, f), 'utf8');
      for (const m of src.matchAll(/create(Counter|Histogram|Gauge)\(\s*'([a-z_]+)'/g)) {
        const name = m[2] as string;
        if (m[1] === 'Histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
        else names.add(name);
      }
    }
  }
  return names;
}

describe('the Grafana dashboard', () => {
  const panels = dashboardPanels();

  it('has panels for outcomes, duration, downtime, bytes, create-task attempts, evacuations and worker health', () => {
    const titles = panels.map((p) => p.title.toLowerCase()).join(' | ');
    for (const word of ['outcome', 'duration', 'downtime', 'bytes', 'create-task', 'evacuation', 'worker']) expect(titles).toContain(word);
  });

  it('reads metric names out of PromQL', () => {
    expect(metricNames('histogram_quantile(0.95, sum by (le) (rate(ferry_migration_duration_bucket{a="b"}[$__rate_interval])))')).toEqual(['ferry_migration_duration_bucket']);
    expect(metricNames('sum by (t) (rate(x_sum[5m])) / sum by (t) (rate(x_count[5m]))')).toEqual(['x_sum', 'x_count']);
  });

  it('every panel query names a metric Ferry exports', () => {
    const ferry = declaredFerryMetrics();
    expect(ferry.has('ferry_migrations')).toBe(true);
    for (const p of panels) {
      const exprs = (p.targets ?? []).map((t) => t.expr ?? '');
      expect(exprs.length, p.title).toBeGreaterThan(0);
      for (const e of exprs) {
        const names = metricNames(e);
        expect(names.length, `${p.title}: ${e}`).toBeGreaterThan(0);
        for (const n of names) {
          if (n.startsWith('ferry_')) expect(ferry.has(n), `${p.title}: ${n} is not declared in activities/, workflows/ or worker/`).toBe(true);
          else expect(n, `${p.title}: ${e}`).toMatch(/^temporal_/);
        }
      }
    }
  });
});
