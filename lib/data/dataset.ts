import type { FloatArray } from '../types';

/** A labelled data set: X row-major [n,D], y class ids in [0, C) (n = y.length). */
export interface Dataset<T extends FloatArray = Float64Array> {
  X: T;
  y: Int32Array;
  /** Features per example (columns of X). */
  D: number;
  /** Number of classes. */
  C: number;
}

/** What every generated set (xor, spirals, blobs) takes. */
export interface PointsOptions {
  /** Number of points (default 200). */
  n?: number;
  /** Integer seed (default 0). */
  seed?: number;
}
