// Data sets and their preparation: generators, CSV and IDX readers, the vendored digits, MNIST,
// standardization and a seeded train/validation split.
export type { Dataset } from './dataset';
export { xor, type XorOptions } from './xor';
export { spirals, type SpiralsOptions } from './spirals';
export { blobs, type BlobsOptions } from './blobs';
export { readCsv, type CsvDataset, type CsvOptions } from './csv';
export { readCsvAsync, type CsvAsyncOptions, type CsvProgress } from './csv-async';
export type { CsvAsyncSource, CsvSource } from './csv-source';
export { loadIdx, readIdx, type IdxArray, type IdxData, type IdxDtype, type IdxOptions } from './idx';
export { digitsPath, loadDigits, type DigitsOptions } from './digits';
export { loadMnist, mnistDataDir, type Mnist, type MnistOptions } from './mnist';
export { fitStandardizer, type Standardizer } from './standardize';
export { trainValSplit, type Split, type SplitOptions } from './split';
