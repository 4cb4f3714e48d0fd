#!/usr/bin/env node
// Merges a fresh recording into the goldens, replacing only the outputs whose bytes changed, after a
// deliberate change of the numbers (an issue that fixes a rounding). Every other output keeps the
// bytes recorded at f29bba6, and cases.json's `rerecorded` lists each merge: the commit, the case
// groups touched, how many outputs, and why. The test then holds the merged numbers bit for bit.
//
//   node test/golden/record.mjs --out /tmp/fresh          (the current build, about 2 s)
//   node test/golden/merge.mjs --from /tmp/fresh --tag issue13b --why "…" [--only group,group]
//
// --only refuses the merge when a case outside the named groups changed: a fix that was meant to
// move one kind of output must not move others unnoticed. Plain Node; the built library's
// safetensors reader/writer (dist/lib/index.js) does the file IO.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const from = arg('--from');
const tag = arg('--tag');
const why = arg('--why');
const only = arg('--only')?.split(',');
if (!from || !tag || !why) {
  console.error('usage: merge.mjs --from DIR --tag NAME --why TEXT [--only group,…] [--into DIR] [--dist index.js]');
  process.exit(2);
}
const into = resolve(arg('--into', join(repo, 'test', 'fixtures', 'golden')));
const { loadSafetensors, saveSafetensors } = await import(pathToFileURL(resolve(arg('--dist', join(repo, 'dist', 'lib', 'index.js')))).href);

const oldManifest = JSON.parse(readFileSync(join(into, 'cases.json'), 'utf8'));
const newManifest = JSON.parse(readFileSync(join(resolve(from), 'cases.json'), 'utf8'));
const oldFile = loadSafetensors(join(into, 'outputs.safetensors'), { copy: true });
const newFile = loadSafetensors(join(resolve(from), 'outputs.safetensors'), { copy: true });
if (oldManifest.cases.length !== newManifest.cases.length) throw new Error('the two recordings hold different cases');

const bytesOf = (t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
const same = (a, b) => a.dtype === b.dtype && a.data.length === b.data.length && bytesOf(a).equals(bytesOf(b));
const digest = (t) => createHash('sha256').update(`${t.dtype}:${t.data.length}:`).update(bytesOf(t)).digest('hex');

const byDigest = new Map(Object.entries(oldFile.tensors).map(([name, t]) => [digest(t), name]));
let added = 0;
let changed = 0;
const groups = new Set();
for (let i = 0; i < oldManifest.cases.length; i++) {
  const o = oldManifest.cases[i];
  const n = newManifest.cases[i];
  if (o.name !== n.name) throw new Error(`case ${i}: ${o.name} vs ${n.name}`);
  for (const [key, name] of Object.entries(o.outputs)) {
    const t = newFile.tensors[n.outputs[key]];
    if (!t) throw new Error(`${o.name}: the fresh recording has no ${key}`);
    if (same(oldFile.tensors[name], t)) continue;
    if (only && !only.includes(o.group)) throw new Error(`${o.name} (group ${o.group}) changed ${key}, outside --only ${only.join(',')}`);
    const d = digest(t);
    let stored = byDigest.get(d);
    if (!stored) {
      stored = `${tag}.${added++}`;
      oldFile.tensors[stored] = t;
      byDigest.set(d, stored);
    }
    o.outputs[key] = stored;
    changed++;
    groups.add(o.group);
  }
}
// Tensors no case names any more are dropped.
const used = new Set(oldManifest.cases.flatMap((c) => Object.values(c.outputs)));
for (const name of Object.keys(oldFile.tensors)) if (!used.has(name)) delete oldFile.tensors[name];

const commit = spawnSync('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
oldManifest.rerecorded = [...(oldManifest.rerecorded ?? []), { commit, groups: [...groups].sort(), outputs: changed, why }];
oldManifest.counts.tensors = Object.keys(oldFile.tensors).length;
oldManifest.counts.dataBytes = Object.values(oldFile.tensors).reduce((s, t) => s + t.data.byteLength, 0);
const json = JSON.stringify({ ...oldManifest, cases: [] }, null, 2).replace(
  '"cases": []',
  `"cases": [\n${oldManifest.cases.map((c) => `    ${JSON.stringify(c)}`).join(',\n')}\n  ]`,
);
writeFileSync(join(into, 'cases.json'), `${json}\n`);
saveSafetensors(join(into, 'outputs.safetensors'), oldFile.tensors, oldFile.metadata);
console.log(`${changed} outputs changed in ${groups.size} groups (${[...groups].sort().join(', ')}); ${added} tensors added → ${into}`);
