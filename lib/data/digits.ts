import { join } from 'node:path';
import { packageRoot } from '../binding';
import type { Dtype } from '../types';
import { readCsv } from './csv';
import type { Dataset } from './dataset';
import { fileFail } from './files';
import * as v from '../validate';
import * as o from './options';

/** The vendored file, data/digits.csv.gz under the package root (the package must ship data/). */
export const digitsPath = join(packageRoot, 'data', 'digits.csv.gz');

export interface DigitsOptions {
  /** 'float64' (default) or 'float32' for X. */
  dtype?: Dtype;
}

/**
 * The UCI "Optical Recognition of Handwritten Digits" test set vendored in data/digits.csv.gz
 * (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0, see data/README.md): 1,797 images of 8×8 pixel counts
 * 0..16, scaled to [0, 1] by dividing by 16, labels 0..9.
 * @returns `{ X [1797,64], y [1797], D: 64, C: 10 }`
 * @throws {HandgradError} code ERR_FILE: the file is missing or not 64 pixel columns of 0..16 and a label 0..9
 */
export function loadDigits(opts?: { dtype?: 'float64' }): Dataset<Float64Array>;
export function loadDigits(opts: { dtype: 'float32' }): Dataset<Float32Array>;
export function loadDigits(opts?: DigitsOptions): Dataset<Float64Array> | Dataset<Float32Array>;
export function loadDigits(opts: DigitsOptions = {}): Dataset<Float64Array> | Dataset<Float32Array> {
  const oo = v.options('opts', opts, ['dtype']);
  const dtype = o.dtype('opts.dtype', oo.dtype);
  const path = digitsPath;
  const d = readCsv(path, { header: false });
  if (d.D !== 64) fileFail('64 pixel columns and a label', 'the digits file', `${d.D + 1} columns`, path);
  if (d.classNames !== undefined || d.C > 10) fileFail('labels 0..9', 'the digits file', `${d.C} classes`, path);
  const X = dtype === 'float64' ? d.X : new Float32Array(d.X.length);
  for (let i = 0; i < d.X.length; i++) {
    const v = d.X[i];
    if (!(v >= 0 && v <= 16)) fileFail('pixel values in [0, 16]', 'the digits file', `${v} at row ${Math.floor(i / 64) + 1}, column ${(i % 64) + 1}`, path);
    X[i] = v / 16;
  }
  return { X, y: d.y, D: 64, C: 10 } as Dataset<Float64Array> | Dataset<Float32Array>;
}
