// `handgrad predict` and `handgrad train` choosing CSV columns as a user names them: a duplicated
// header name, a mistyped --label, a CSV without a header, an empty first-feature cell, and a
// column whose name is a number; predict's labels read as the model's class names, a model file
// without feature names on a CSV with or without the label, every feature cell by one number rule,
// nothing written before every label is checked; train refusing before training what the model
// file would refuse at the save. The compiled CLI (dist/) runs in child processes; expected
// predictions come from loadModel on rows written out by hand here, never from the CLI's parsing,
// and expected accuracies from those predictions and the labels the test wrote.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, saveModel, Sequential } from '../lib';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-cli-data-'));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const file = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};
/** Trains one epoch on a CSV; the model path. */
function train(data: string, out: string, extra: string[] = []) {
  const r = cli(['train', '--data', data, '--out', join(tmp, out), '--epochs', '1', '--backend', 'ts', '--quiet', ...extra]);
  if (r.code !== 0) throw new Error(`handgrad train failed: ${r.stderr}`);
  return join(tmp, out, 'model.safetensors');
}

// Ten rows of two features, written here so the expected inputs are known without any parser.
const ROWS = [[0, 0], [1, 0.5], [2, 1], [3, 1.5], [4, 2], [5, 2.5], [6, 3], [7, 3.5], [8, 4], [9, 4.5]];
const LABELS = [0, 0, 0, 1, 0, 1, 1, 1, 0, 1];
let named: string; // trained on x,y,label (labels a/b)
let headerless: string; // trained on the same rows without a header (features col1, col2; label col3)
let HEADERLESS: string;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('dist/ is not built: run `node scripts/setup.mjs` (npm test does) before this file');
  named = train(file('named.csv', `x,y,label\n${ROWS.map((r, i) => `${r},${'ab'[LABELS[i]]}`).join('\n')}\n`), 'named');
  HEADERLESS = file('headerless.csv', `${ROWS.map((r, i) => `${r},${LABELS[i]}`).join('\n')}\n`);
  headerless = train(HEADERLESS, 'headerless');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What the model predicts for rows given as numbers here. */
const truth = (model: string, rows: number[][]) => loadModel(model).predictClasses(Float64Array.from(rows.flat()));

describe('handgrad predict: columns by name', () => {
  it('refuses a feature name (or the label name) spelled by two columns, naming the name and its columns', () => {
    const y = cli(['predict', '--model', named, '--data', file('dup-y.csv', 'x,y,y\n1,2,3\n'), '--backend', 'ts']);
    expect(y.code).toBe(2);
    expect(y.stdout).toBe('');
    expect(y.stderr).toMatch(/Expected one column named "y" \(feature 2 of the 2 the model was trained on\) for --data \S+dup-y\.csv but received columns 2 and 3 of the header "x", "y", "y" \(line 1\)/);
    // The first feature duplicated (the file has no label column): the same words, no opts.label.
    const x = cli(['predict', '--model', named, '--data', file('dup-x.csv', 'x,y,x\n1,2,3\n'), '--backend', 'ts']);
    expect(x.code).toBe(2);
    expect(x.stderr).toMatch(/Expected one column named "x" \(feature 1 of the 2 .*\) for --data .* columns 1 and 3 of the header/);
    expect(x.stderr).not.toMatch(/opts\./);
    const label = cli(['predict', '--model', named, '--data', file('dup-label.csv', 'x,y,label,label\n1,2,a,b\n'), '--backend', 'ts']);
    expect(label.code).toBe(2);
    expect(label.stderr).toMatch(/one column named "label" .*columns 3 and 4 of the header/);
  });

  it('an explicit --label that names no column is an error naming --label and the header; without --label a missing label means no accuracy', () => {
    const data = file('labelled.csv', 'x,y,label\n1,0.5,a\n8,4,b\n');
    const typo = cli(['predict', '--model', named, '--data', data, '--label', 'lable', '--backend', 'ts']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/Expected a column named "lable" for --label but received the header "x", "y", "label" \(line 1\)/);
    const plain = cli(['predict', '--model', named, '--data', file('unlabelled.csv', 'y,x\n0.5,1\n4,8\n'), '--backend', 'ts']);
    expect(plain.code).toBe(0);
    expect(plain.stderr).not.toMatch(/accuracy/);
    expect(plain.stdout).toBe(`prediction\n${truth(named, [[1, 0.5], [8, 4]]).join('\n')}\n`);
  });

  it('an empty first-feature cell is a missing number for that feature column, not a missing label', () => {
    const r = cli(['predict', '--model', named, '--data', file('empty-x.csv', 'x,y\n1,2\n,3\n'), '--backend', 'ts']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected a number for column "x" \(column 1\) on line 3 but received "" \(an empty cell\)/);
    expect(r.stderr).not.toMatch(/a label/);
  });
});

describe('handgrad predict: a model trained on a CSV without a header', () => {
  it('reads the same headerless file by position (colK is column K) and scores its label column', () => {
    expect(loadModel(headerless).features).toEqual(['col1', 'col2']); // train's made-up names
    const r = cli(['predict', '--model', headerless, '--data', HEADERLESS, '--backend', 'ts']);
    expect(r.code, r.stderr).toBe(0);
    const want = truth(headerless, ROWS);
    expect(r.stdout).toBe(`prediction\n${want.join('\n')}\n`); // all ten rows: none taken as a header
    const correct = want.filter((c, i) => c === String(LABELS[i])).length;
    expect(r.stderr).toContain(`(${correct} of 10 rows, label column "col3")`);
    // The label column left off: the features alone, no accuracy.
    const bare = cli(['predict', '--model', headerless, '--data', file('hl-bare.csv', '3,1.5\n0,0\n'), '--backend', 'ts', '--header', 'false']);
    expect(bare.code, bare.stderr).toBe(0);
    expect(bare.stdout).toBe(`prediction\n${truth(headerless, [[3, 1.5], [0, 0]]).join('\n')}\n`);
    expect(bare.stderr).not.toMatch(/accuracy/);
  });

  it('--header true names the missing feature names; --header false needs a model of col1…colN', () => {
    const r = cli(['predict', '--model', headerless, '--data', HEADERLESS, '--header', 'true', '--backend', 'ts']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected columns named "col1" \(feature 1\), "col2" \(feature 2\) of the 2 the model was trained on for --data .* but received the header "0", "0", "0" \(line 1\)/);
    expect(r.stderr).not.toMatch(/opts\./);
    const f = cli(['predict', '--model', named, '--data', HEADERLESS, '--header', 'false', '--backend', 'ts']);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/for --header but received false; the model's features are "x", "y"/);
  });
});

describe('handgrad train --label', () => {
  it('a column named "2020" is chosen by name; an unknown name is an error naming --label', () => {
    const data = file('year.csv', `x,y,2020\n${ROWS.map((r, i) => `${r},${LABELS[i]}`).join('\n')}\n`);
    const m = loadModel(train(data, 'year', ['--label', '2020']));
    expect([m.label, m.features]).toEqual(['2020', ['x', 'y']]);
    const r = cli(['train', '--data', data, '--label', 'nosuch', '--out', join(tmp, 'nosuch'), '--epochs', '1', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected a column named "nosuch" or a 0-based column index for --label but received the header "x", "y", "2020" \(line 1\)/);
  });

  it('a header naming two feature columns alike is refused before training, naming --data and the columns', () => {
    const data = file('dup-train.csv', `x,x,label\n${ROWS.map((r, i) => `${r},${LABELS[i]}`).join('\n')}\n`);
    const r = cli(['train', '--data', data, '--out', join(tmp, 'dup-train'), '--epochs', '1', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected distinct column names .* for --data \S+dup-train\.csv but received "x" for columns 1 and 2 of the header "x", "x", "label" \(line 1\)/);
    expect(existsSync(join(tmp, 'dup-train', 'model.safetensors'))).toBe(false);
  });

  it('an integer that is both a first-row name and an index is refused; --header true picks the name, --label-index the index', () => {
    const data = file('amb.csv', `2,x,y,z\n${ROWS.map((r, i) => `${LABELS[i]},${r},${1 - LABELS[i]}`).join('\n')}\n`);
    const r = cli(['train', '--data', data, '--label', '2', '--out', join(tmp, 'amb'), '--epochs', '1', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/for --label but received both the name of column 1 .*and a 0-based index \(column 3\).*--header true.*--label-index 2/);
    const byName = loadModel(train(data, 'amb-name', ['--label', '2', '--header', 'true']));
    expect([byName.label, byName.features]).toEqual(['2', ['x', 'y', 'z']]);
    const byIndex = loadModel(train(data, 'amb-index', ['--label-index', '2']));
    expect([byIndex.label, byIndex.features]).toEqual(['y', ['2', 'x', 'z']]);
  });
});

/** A model file of a seeded 2 → 4 → 3 net (no training: the test asks the model itself what it predicts), with `opts`' names. */
function apiModel(name: string, opts: { classes?: string[]; features?: string[]; label?: string }) {
  const path = join(tmp, `${name}.safetensors`);
  saveModel(Sequential.mlp([2, 4, 3], { seed: 3 }), path, opts);
  return path;
}
// Rows spread wide enough that a random net predicts more than one class among them.
const WIDE = Array.from({ length: 12 }, (_, i) => [((i * 7) % 12) - 6, ((i * 5) % 12) - 6]);
/** The accuracy line predict prints, from labels and predictions the test holds. */
const accuracyLine = (labels: string[], predicted: string[], column: string) => {
  const correct = labels.filter((l, i) => l === predicted[i]).length;
  return `accuracy ${((100 * correct) / labels.length).toFixed(2)}% (${correct} of ${labels.length} rows, label column ${JSON.stringify(column)})`;
};

describe('handgrad predict: labels as the model names its classes', () => {
  it('class names that look like integers ("1", "1.0", "01") are matched as written, never as the class id 1', () => {
    const model = apiModel('int-like', { classes: ['1', '1.0', '01'], features: ['a', 'b'], label: 'label' });
    const predicted = truth(model, WIDE);
    expect(new Set(predicted).size).toBeGreaterThan(1); // the test means something only if the classes differ
    // Labels: the prediction on even rows, another class on odd ones.
    const names = ['1', '1.0', '01'];
    const labels = predicted.map((p, i) => (i % 2 === 0 ? p : names[(names.indexOf(p) + 1) % 3]));
    const data = file('int-like.csv', `a,b,label\n${WIDE.map((r, i) => `${r},${labels[i]}`).join('\n')}\n`);
    const r = cli(['predict', '--model', model, '--data', data, '--backend', 'ts']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`prediction\n${predicted.join('\n')}\n`);
    expect(r.stderr.trim()).toBe(accuracyLine(labels, predicted, 'label'));
    // Every label "1.0" on a model whose classes are 1.0 and 2.0: the file holds no "1".
    const model2 = apiModel('int-like2', { classes: ['1.0', '2.0', 'x'], features: ['a', 'b'], label: 'label' });
    const predicted2 = truth(model2, WIDE);
    const r2 = cli(['predict', '--model', model2, '--data', file('int-like2.csv', `a,b,label\n${WIDE.map((row) => `${row},1.0`).join('\n')}\n`), '--backend', 'ts']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr.trim()).toBe(accuracyLine(WIDE.map(() => '1.0'), predicted2, 'label'));
  });

  it('a label the model does not know is an error before anything is written: no -o file, nothing on stdout', () => {
    const model = apiModel('unknown-label', { classes: ['1', '1.0', '01'], features: ['a', 'b'], label: 'label' });
    const data = file('unknown-label.csv', 'a,b,label\n1,2,1.0\n3,4,2\n');
    const out = join(tmp, 'unknown-label-out.csv');
    const r = cli(['predict', '--model', model, '--data', data, '-o', out, '--backend', 'ts']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected a class the model knows \("1", "1\.0", "01"\) for column "label" \(column 3\) on line 3 but received "2"/);
    expect(r.stderr).not.toMatch(/opts\./);
    expect(existsSync(out)).toBe(false);
    const plain = cli(['predict', '--model', model, '--data', data, '--backend', 'ts']);
    expect(plain.code).toBe(2);
    expect(plain.stdout).toBe('');
    // A model without class names takes class ids in [0, C): 3 is none of them.
    const ids = apiModel('ids', { features: ['a', 'b'], label: 'label' });
    const bad = cli(['predict', '--model', ids, '--data', file('ids-bad.csv', 'a,b,label\n1,2,0\n3,4,3\n'), '-o', out, '--backend', 'ts']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Expected a class id the model knows \(0 to 2: its file names no classes\) for the label column "label" in data row 2 but received "3"/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('handgrad predict: a model file without feature names', () => {
  it('takes exactly D columns as the features (header or none), D + 1 as the features and the label last; other counts are refused', () => {
    const model = apiModel('nameless', {});
    expect(loadModel(model).features).toBeUndefined();
    const rows = WIDE.slice(0, 4);
    const want = `prediction\n${truth(model, rows).join('\n')}\n`;
    for (const [name, text] of [['bare', ''], ['bare-header', 'p,q\n']]) {
      const r = cli(['predict', '--model', model, '--data', file(`${name}.csv`, `${text}${rows.map((r) => r.join(',')).join('\n')}\n`), '--backend', 'ts']);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toBe(want);
      expect(r.stderr).not.toMatch(/accuracy/);
    }
    const labels = ['0', '1', '2', '0'];
    const labelled = cli(['predict', '--model', model, '--data', file('nameless-labelled.csv', `${rows.map((r, i) => `${r},${labels[i]}`).join('\n')}\n`), '--backend', 'ts']);
    expect(labelled.code, labelled.stderr).toBe(0);
    expect(labelled.stdout).toBe(want);
    expect(labelled.stderr.trim()).toBe(accuracyLine(labels, truth(model, rows), 'col3'));
    const wide = cli(['predict', '--model', model, '--data', file('nameless-wide.csv', '1,2,3,0\n'), '--backend', 'ts']);
    expect(wide.code).toBe(2);
    expect(wide.stderr).toMatch(/Expected 2 columns \(the model's inputs; its file names none\) or 3 \(and the label last\) for --data \S+nameless-wide\.csv but received 4 columns on line 1/);
  });
});

describe('handgrad predict: one number rule for every feature column', () => {
  // The first feature column of a file without a label column went through readCsv's label slot
  // and was trimmed by String.prototype.trim: these read as 1 there, and are errors in any other column.
  const BAD: [string, string][] = [['a no-break space', '1\u00a0'], ['a BOM', '\ufeff1'], ['a vertical tab', '1\v'], ['an ideographic space', '\u30001'], ['a quoted " 1"', '" 1"']];
  for (const [what, cellText] of BAD) {
    it(`${what} is not a number in the first column, as in the second`, () => {
      for (const [col, text] of [['x', `x,y\n0,0\n${cellText},2\n`], ['y', `x,y\n0,0\n2,${cellText}\n`]]) {
        const r = cli(['predict', '--model', named, '--data', file(`rule-${col}.csv`, text), '--backend', 'ts']);
        expect(r.code, `column ${col}: ${r.stdout}`).toBe(2);
        expect(r.stderr).toMatch(new RegExp(`Expected a number for column "${col}" \\(column ${col === 'x' ? 1 : 2}\\) on line 3 but received`));
        expect(r.stdout).toBe('');
      }
    });
  }
  it('ASCII spaces and tabs around an unquoted number are trimmed in every column alike', () => {
    const r = cli(['predict', '--model', named, '--data', file('spaces.csv', 'x,y\n 3\t, 1.5 \n\t8 ,4\n'), '--backend', 'ts']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`prediction\n${truth(named, [[3, 1.5], [8, 4]]).join('\n')}\n`);
  });
});

describe('handgrad train: what the model file would refuse is refused before training', () => {
  const rows = (f: (i: number) => string) => `${Array.from({ length: 20 }, (_, i) => f(i)).join('\n')}\n`;
  const refused = (name: string, text: string) => {
    const out = join(tmp, `refuse-${name}`);
    const r = cli(['train', '--data', file(`refuse-${name}.csv`, text), '--out', out, '--epochs', '1', '--backend', 'ts']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe(''); // not even the line that starts training
    expect(r.stderr).not.toMatch(/opts\./);
    expect(readdirSync(out)).toEqual([]);
    return r.stderr;
  };
  it('a label column named like a feature, an empty header name, naming --data and the column', () => {
    expect(refused('label-dup', `a,b,a\n${rows((i) => `${i},${i % 3},${'xy'[i % 2]}`)}`))
      .toMatch(/Expected distinct column names .* for --data \S+refuse-label-dup\.csv but received "a" for columns 1 and 3 of the header "a", "b", "a"/);
    expect(refused('empty-label', `a,b,\n${rows((i) => `${i},${i % 3},${'xy'[i % 2]}`)}`))
      .toMatch(/Expected a name for every column of the header .* but received an empty name for column 3 of the header "a", "b", ""/);
    expect(refused('empty-feature', `a,,label\n${rows((i) => `${i},${i % 3},${'xy'[i % 2]}`)}`))
      .toMatch(/Expected a name for every column of the header .* but received an empty name for column 2 of the header "a", "", "label"/);
  });
  it('a column whose standard deviation is subnormal (values 0 and 2e-310), naming the column', () => {
    expect(refused('subnormal', `a,b,label\n${rows((i) => `${i},${i % 2 ? '2e-310' : '0'},${'xy'[i % 2]}`)}`))
      .toMatch(/column "b" of --data .*--data \S+refuse-subnormal\.csv/); // the column by name (fitStandardizer's refusal, in the CSV's terms)
  });
  it('a CSV of one data row: --data needs two (80/20 split), said before training', () => {
    expect(refused('one-row', 'a,b,label\n1,2,x\n')).toMatch(/Expected at least 2 data rows \(a CSV is split 80\/20 into training and validation rows\) for --data \S+refuse-one-row\.csv but received 1 row/);
  });
});
