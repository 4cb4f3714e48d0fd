// Per-class precision and recall and the confusion matrix of a classifier's predictions, counted
// in the pass that computes the loss (Sequential.score): as scikit-learn's
// precision_recall_fscore_support(average=None, zero_division=0) and confusion_matrix
// (rows: the true class, columns: the predicted class).

/**
 * The most classes for which evaluate() returns the confusion matrix: C×C int32 counts are 4 MB
 * at 1024 classes, and 17 GB at readCsv's 65,536; past it `confusion` is null (precision and
 * recall still come, from O(C) counts).
 */
export const MAX_CONFUSION_CLASSES = 1024;

export interface ClassMetrics {
  /**
   * precision[c]: of the rows predicted c, the fraction whose class is c; 0 when no row is
   * predicted c (scikit-learn's zero_division=0: never NaN).
   */
  precision: number[];
  /** recall[c]: of the rows of class c, the fraction predicted c; 0 when no row is of class c (see support). */
  recall: number[];
  /** support[c]: the rows of class c (rows whose label is ignore_index are left out of every metric). */
  support: number[];
  /**
   * [C,C] row-major: confusion[t·C + p] counts the rows of class t predicted p (the diagonal is
   * what is right). null when C > MAX_CONFUSION_CLASSES (1024).
   */
  confusion: Int32Array | null;
}

/** Counts of (true class, predicted class) pairs, one add() per row. */
export class ClassCounts {
  private readonly hits: Float64Array;
  private readonly predicted: Float64Array;
  private readonly actual: Float64Array;
  private readonly confusion: Int32Array | null;

  constructor(private readonly C: number) {
    this.hits = new Float64Array(C);
    this.predicted = new Float64Array(C);
    this.actual = new Float64Array(C);
    this.confusion = C <= MAX_CONFUSION_CLASSES ? new Int32Array(C * C) : null;
  }

  add(truth: number, prediction: number): void {
    this.actual[truth]++;
    this.predicted[prediction]++;
    if (truth === prediction) this.hits[truth]++;
    if (this.confusion !== null) this.confusion[truth * this.C + prediction]++;
  }

  metrics(): ClassMetrics {
    const ratio = (num: Float64Array, den: Float64Array) => Array.from(num, (x, c) => (den[c] === 0 ? 0 : x / den[c]));
    return {
      precision: ratio(this.hits, this.predicted),
      recall: ratio(this.hits, this.actual),
      support: Array.from(this.actual),
      confusion: this.confusion,
    };
  }
}

/** What Sequential.evaluate (and Trainer.evaluate) returns. */
export interface Evaluation extends ClassMetrics {
  /** The mean loss (F.cross_entropy's, with the net's loss options). */
  loss: number;
  /** The fraction of rows predicted right (rows labelled ignore_index left out). */
  accuracy: number;
}
