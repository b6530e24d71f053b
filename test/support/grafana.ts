/** The Grafana dashboard in the repository (grafana/dashboards/ferry.json) and the metric names its queries use. */
import fs from 'node:fs';
import path from 'node:path';

export const DASHBOARD = path.join(__dirname, '..', '..', 'grafana', 'dashboards', 'ferry.json');

export interface DashboardPanel {
  title: string;
  targets?: { expr?: string }[];
}

export function dashboardPanels(): DashboardPanel[] {
  return (JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: DashboardPanel[] }).panels;
}

/** The metric names of one PromQL expression: identifiers that are not functions, grouping labels, label matchers or ranges. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without)\s*\([^)]*\)/g, '');
  return [...new Set([...bare.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)].filter((m) => m[2] === undefined).map((m) => m[1] as string))];
}
