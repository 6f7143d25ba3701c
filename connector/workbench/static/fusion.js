// Hybrid fusion in the browser: erank/fusion.py and the ordering of erank/ranking.py, operation
// for operation, so re-fusing the returned scores at another alpha or method gives the server's
// order and scores bit for bit (tests/test_workbench_browser.py compares them with the server's).
// Sums are numpy's pairwise summation (what ndarray.mean/std use), not a left-to-right loop.

export const MINMAX_EPSILON = 1e-6;

// numpy's pairwise_sum for float64: 8 accumulators up to 128 values, halves above that.
function pairwiseSum(a, start, n) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = a.slice(start, start + 8);
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    }
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

const sum = (a) => 0 + pairwiseSum(a, 0, a.length);
const mean = (a) => sum(a) / a.length;
const maxAbs = (a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

// Population z-scores; all zeros when every value is the same (erank.fusion.zscores).
export function zscores(values) {
  if (values.length === 0 || values.every((v) => v === values[0])) return values.map(() => 0);
  const scale = maxAbs(values);
  const x = values.map((v) => v / scale);
  const m = mean(x);
  const std = Math.sqrt(mean(x.map((v) => (v - m) * (v - m))));
  return x.map((v) => (v - m) / std);
}

// (s − min) / (max − min); all ones when max − min < 1e-6 (erank.fusion.minmax).
export function minmax(values) {
  if (values.length === 0) return [];
  const low = Math.min(...values);
  const high = Math.max(...values);
  if (high - low < MINMAX_EPSILON) return values.map(() => 1);
  const scale = maxAbs(values);
  return values.map((v) => (v / scale - low / scale) / (high / scale - low / scale));
}

// 1-based ranks by descending value; equal values share their group's best rank.
export function ranks(values) {
  return values.map((v) => 1 + values.filter((w) => w > v).length);
}

export function hybridScores(first, rank, alpha, method, rankConstant) {
  if (method === "rrf") {
    const k = rankConstant;
    const a = ranks(first);
    const b = ranks(rank);
    return a.map((r, i) => alpha / (k + r) + (1 - alpha) / (k + b[i]));
  }
  const normalise = method === "minmax" ? minmax : zscores;
  const a = normalise(first);
  const b = normalise(rank);
  return a.map((v, i) => alpha * v + (1 - alpha) * b[i]);
}

// Rank scores as fusion sees them: an unscored document takes the mean (a plain left-to-right
// sum, as Python's sum) of the scored ones (erank.ranking._for_fusion).
export function forFusion(rows) {
  const known = rows.filter((r) => r.completion !== "unscored").map((r) => r.rank_score);
  let total = 0;
  for (const v of known) total += v;
  const fill = known.length ? total / known.length : 0;
  return rows.map((r) => (r.completion === "unscored" ? fill : r.rank_score));
}

// Rows (any order, each with first_stage_rank, first_stage_score, rank_score, completion)
// fused at alpha with method, best first, ties in first-stage order; each with hybrid_score.
export function refuse(rows, alpha, method, rankConstant) {
  const inOrder = [...rows].sort((a, b) => a.first_stage_rank - b.first_stage_rank);
  const fused = hybridScores(
    inOrder.map((r) => r.first_stage_score),
    forFusion(inOrder),
    alpha,
    method,
    rankConstant,
  );
  const order = inOrder.map((_, i) => i).sort((i, j) => fused[j] - fused[i] || i - j);
  return order.map((i) => ({ ...inOrder[i], hybrid_score: fused[i] }));
}
