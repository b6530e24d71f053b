/**
 * Which module may import which (ARCHITECTURE.md), checked on every source file's import and export
 * declarations. A type-only import is free where a runtime import is not: the workflow sandbox may know the
 * activities' types but must never load their code (nor Node's builtins).
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { WORKFLOW_TYPES } from '../../workflows/definitions';

const REPO = path.join(__dirname, '..', '..');

/** Runtime imports each layer may make of Ferry's own folders (its own folder is always allowed). */
const ALLOWED: Record<string, readonly string[]> = {
  common: [],
  hypervisor: ['common'],
  inventory: ['common', 'hypervisor'],
  activities: ['common', 'hypervisor', 'inventory'],
  workflows: ['common'],
  client: ['common', 'workflows/definitions'],
  worker: ['common', 'hypervisor', 'inventory', 'activities', 'client', 'workflows/definitions'],
  lab: ['common', 'hypervisor', 'inventory'],
  cluster: ['common', 'hypervisor', 'inventory', 'client', 'worker', 'lab'],
  cli: ['common', 'hypervisor', 'inventory', 'client', 'worker', 'lab', 'webui', 'cluster', 'workflows/definitions'],
  webui: ['common', 'inventory', 'client', 'hypervisor/errors'],
};
/** Type-only imports allowed on top of those. */
const TYPES_ALSO: Record<string, readonly string[]> = {
  workflows: ['activities', 'inventory'],
};
/** Packages code in the workflow sandbox (workflows/ and what it loads from common/) may load. */
const SANDBOX_PACKAGES = ['@temporalio/workflow', '@temporalio/common', 'zod'];

interface Import {
  file: string;
  spec: string;
  typeOnly: boolean;
}

function sourcesOf(dir: string): string[] {
  return fs
    .readdirSync(path.join(REPO, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(dir, f));
}

function importsOf(file: string): Import[] {
  const src = ts.createSourceFile(file, fs.readFileSync(path.join(REPO, file), 'utf8'), ts.ScriptTarget.ES2022, false);
  const out: Import[] = [];
  for (const node of src.statements) {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            clause.namedBindings !== undefined &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      out.push({ file, spec: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ file, spec: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    }
  }
  // Lazy loads (`require('../x')` where a command or a driver needs a module only when it runs) are runtime imports too.
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'require') {
      const [arg] = node.arguments;
      if (arg !== undefined && ts.isStringLiteral(arg)) out.push({ file, spec: arg.text, typeOnly: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return out;
}

/** The repository folder (and, for workflows/, the module) a relative import lands in. */
function landsIn(imp: Import): { layer: string; module: string } | null {
  if (!imp.spec.startsWith('.')) return null;
  const abs = path.relative(REPO, path.resolve(REPO, path.dirname(imp.file), imp.spec));
  const [layer = ''] = abs.split(path.sep);
  return { layer, module: abs.split(path.sep).join('/') };
}

const LAYERS = Object.keys(ALLOWED);
const imports = LAYERS.flatMap((layer) => sourcesOf(layer).flatMap(importsOf));

describe('module boundaries (ARCHITECTURE.md)', () => {
  it('reads the sources', () => {
    expect(imports.length).toBeGreaterThan(200);
  });

  it('every layer imports only the layers it may', () => {
    const wrong: string[] = [];
    for (const imp of imports) {
      const from = imp.file.split(path.sep)[0] ?? '';
      const to = landsIn(imp);
      if (to === null || to.layer === from) continue;
      const allowed = [...(ALLOWED[from] ?? []), ...(imp.typeOnly ? (TYPES_ALSO[from] ?? []) : [])];
      if (!allowed.some((a) => to.module === a || to.layer === a)) wrong.push(`${imp.file} imports ${imp.spec}${imp.typeOnly ? ' (types)' : ''}`);
    }
    expect(wrong).toEqual([]);
  });

  it('nothing but tests and benchmarks imports test/ or bench/', () => {
    const wrong = imports.filter((i) => ['test', 'bench'].includes(landsIn(i)?.layer ?? '')).map((i) => `${i.file} imports ${i.spec}`);
    expect(wrong).toEqual([]);
  });

  it('the workflow sandbox (workflows/, common/) loads no Node builtin and no package but the sandbox-safe ones', () => {
    const wrong = imports
      .filter((i) => ['workflows', 'common'].includes(i.file.split(path.sep)[0] ?? ''))
      .filter((i) => !i.typeOnly && !i.spec.startsWith('.') && !SANDBOX_PACKAGES.includes(i.spec))
      .map((i) => `${i.file} imports ${i.spec}`);
    expect(wrong).toEqual([]);
  });

  it('every workflow type name is a workflow the worker registers (workflows/index.ts exports it)', () => {
    const file = path.join('workflows', 'index.ts');
    const src = ts.createSourceFile(file, fs.readFileSync(path.join(REPO, file), 'utf8'), ts.ScriptTarget.ES2022, false);
    const exported = src.statements
      .filter(ts.isExportDeclaration)
      .flatMap((d) => (d.exportClause && ts.isNamedExports(d.exportClause) ? d.exportClause.elements.map((e) => e.name.text) : []));
    expect(exported.sort()).toEqual(Object.values(WORKFLOW_TYPES).sort());
  });
});
