/* Percentile charts: a quantile metric's chart (GET /v1/metrics lists it with kind "quantile") gets a
 * q picker, and its query the q picked.
 *
 * The chart itself is the metric's ordinary panel (panels.js): a quantile's series is a time series of
 * the picked percentile per bucket, so it is drawn like any other, from the API's answer (which echoes
 * "q"). A pick asks for that one chart again, not the whole view (panels.js redrawChart).
 */

const Q_CHOICES = [0.5, 0.9, 0.95, 0.99];
const picked = new Map(); // metric name -> the q picked on this page (kept across views, not in the link)

export function isQuantile(metric) {
  return metric.kind === "quantile";
}

// The metric's own q (the spec's, from GET /v1/metrics), which the API also uses when none is asked for.
function defaultQ(metric) {
  return typeof metric.q === "number" ? metric.q : 0.5;
}

export function chosenQ(metric) {
  return picked.has(metric.name) ? picked.get(metric.name) : defaultQ(metric);
}

// The query's q: none at the metric's own q, so the default chart asks exactly what a plain chart
// would (and shares its HTTP cache entry); otherwise the q picked.
export function quantileParams(metric) {
  const q = chosenQ(metric);
  return q === defaultQ(metric) ? {} : { q: String(q) };
}

// 0.95 -> "p95", 0.999 -> "p99.9".
export function percentileLabel(q) {
  return `p${+(q * 100).toFixed(3)}`;
}

export function quantilePicker(metric) {
  const label = document.createElement("label");
  label.className = "q-picker";
  label.textContent = "Percentile";
  const select = document.createElement("select");
  select.dataset.quantile = metric.name;
  const choices = [...new Set([...Q_CHOICES, defaultQ(metric)])].sort((a, b) => a - b);
  for (const q of choices) {
    const option = document.createElement("option");
    option.value = String(q);
    option.textContent = q === defaultQ(metric) ? `${percentileLabel(q)} (default)` : percentileLabel(q);
    option.selected = q === chosenQ(metric);
    select.append(option);
  }
  label.append(select);
  return label;
}

// onPick(name) draws the metric's chart again, once chosenQ gives the new pick.
export function bindQuantilePickers(container, onPick) {
  container.addEventListener("change", (e) => {
    const name = e.target.dataset.quantile;
    if (!name) return;
    picked.set(name, Number(e.target.value));
    onPick(name);
  });
}
