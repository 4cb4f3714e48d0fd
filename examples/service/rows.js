// The rows a predict request holds, as the model takes them: X [n,D] of raw features (float64) in
// the model's feature order. Two forms:
//   application/json  { "rows": [[x1, …, xD], …] }  (or the bare array), in the training order;
//   text/csv          a header naming the features (any order; the label and other columns left
//                     aside), or no header and exactly the D feature columns in training order.
// handgrad's CSV readers always take a label column; a CSV of features alone is read the way
// `handgrad predict` reads one: a feature column takes the label's place (its cells come back as
// label texts, turned into numbers here with readCsv's number syntax).
'use strict';
const { readCsvAsync } = require('handgrad');
const { HttpError } = require('./http');

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const ANY_COUNT = 2 ** 31 - 1; // a feature read through the label slot may hold any number of distinct values

/** Rows from a parsed JSON body. @throws {HttpError} 400 */
function jsonRows(body, D) {
  let parsed;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new HttpError(400, `The body is not JSON: ${e.message}`);
  }
  const rows = Array.isArray(parsed) ? parsed : parsed && parsed.rows;
  if (!Array.isArray(rows) || rows.length === 0) throw new HttpError(400, 'Expected { "rows": [[x1, …, xD], …] } with at least one row');
  const X = new Float64Array(rows.length * D);
  rows.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== D) throw new HttpError(400, `Expected ${D} numbers (the model's features) in rows[${i}] but received ${Array.isArray(row) ? row.length : typeof row}`);
    row.forEach((x, j) => {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new HttpError(400, `Expected a finite number in rows[${i}][${j}] but received ${JSON.stringify(x)}`);
      X[i * D + j] = x;
    });
  });
  return X;
}

/** Whether readCsv refused a label column the header does not have. */
const noSuchColumn = (e) => e && e.code === 'ERR_FILE' && /for opts\.label but received the header/.test(e.message);

/** The label text of row i: a class name, or the class id as written. */
const labelText = (d, i) => (d.classNames ? d.classNames[d.y[i]] : String(d.y[i]));

/** Rows from a CSV body (see the file's head). @throws {HttpError|HandgradError} */
async function csvRows(body, model, maxBytes) {
  const D = model.inFeatures;
  const names = model.features;
  const read = (opts) => readCsvAsync(body, { maxBytes, ...opts });
  let d;
  let slot; // the feature read through the label slot, if any
  if (model.label !== undefined) d = await read({ label: model.label, header: true }).catch((e) => (noSuchColumn(e) ? undefined : Promise.reject(e)));
  if (d === undefined && names !== undefined) {
    d = await read({ label: names[0], header: true, maxClasses: ANY_COUNT }).catch((e) => (noSuchColumn(e) ? undefined : Promise.reject(e)));
    if (d !== undefined) slot = names[0];
  }
  if (d === undefined) {
    // No header naming the features: the D columns by position.
    const expected = `a header naming the model's features (${(names ?? []).slice(0, 8).join(', ')}${D > 8 ? ', …' : ''}; any order, other columns left aside), or no header and exactly ${D} numeric columns`;
    d = await read({ label: 0, header: false, maxClasses: ANY_COUNT }).catch((e) => {
      // Line 1 not numbers: it was a header, without the features' names.
      throw e && e.code === 'ERR_FILE' && / on line 1 /.test(e.message) ? new HttpError(400, `Expected ${expected}, but line 1 is neither (${e.message})`) : e;
    });
    if (d.D + 1 !== D) throw new HttpError(400, `Expected ${expected}, but received ${d.D + 1} columns`);
    return pick(d, D, (k) => (k === 0 ? -1 : k - 1));
  }
  const at = new Map(d.featureNames.map((n, j) => [n, j]));
  return pick(d, D, (k) => {
    if (names[k] === slot) return -1;
    const j = at.get(names[k]);
    if (j === undefined) throw new HttpError(400, `Expected a column named ${JSON.stringify(names[k])} (feature ${k + 1} of the ${D} the model was trained on)`);
    return j;
  });
}

/** X [n,D]: feature k from column columnOf(k) of d.X, or from the label slot (−1). */
function pick(d, D, columnOf) {
  const n = d.y.length;
  const X = new Float64Array(n * D);
  for (let k = 0; k < D; k++) {
    const j = columnOf(k);
    for (let i = 0; i < n; i++) {
      if (j >= 0) X[i * D + k] = d.X[i * d.D + j];
      else {
        const t = labelText(d, i).trim();
        const x = NUMBER.test(t) ? Number(t) : NaN;
        if (!Number.isFinite(x)) throw new HttpError(400, `Expected a finite number in feature ${k + 1}, data row ${i + 1}, but received ${JSON.stringify(t)}`);
        X[i * D + k] = x;
      }
    }
  }
  return X;
}

module.exports = { csvRows, jsonRows };
