/* The panels of the view drawn, for live.js: what each one's query reads (touches.js), and how to ask
 * for it again, alone, in the same view. A panel that asked nothing (a message: "Not sliced by ...")
 * is not listed: no event changes what it says.
 */

import { loadCard } from "./cards.js";
import { loadFunnel } from "./funnel.js";
import { loadChart } from "./panels.js";
import { anchorOf } from "./ranges.js";
import { loadRetention } from "./retention.js";
import { $, chartMetrics, dashboard, headlineMetrics } from "./state.js";
import { seriesReads, sketchReads } from "./touches.js";

// sketchPanels: the retention's and the funnel's metrics (dashboard.js). Each panel is
// {key, element, reads, reload(): Promise}.
export function viewPanels(sketchPanels) {
  const [state, generation, health] = [dashboard.state, dashboard.generation, dashboard.health];
  if (!state || !health || !health.newest_hour) return [];
  const anchor = anchorOf(health);
  const element = (kind, name) => document.querySelector(`.${kind}[data-metric="${CSS.escape(name)}"]`);
  const panels = [];
  for (const metric of headlineMetrics()) {
    const queries = dashboard.cards[metric.name] && dashboard.cards[metric.name].queries;
    if (!queries) continue;
    panels.push({
      key: `card:${metric.name}`,
      element: element("card", metric.name),
      reads: seriesReads(metric, [queries.current, queries.previous]),
      reload: () => loadCard(metric, state, anchor, generation),
    });
  }
  const retention = dashboard.retention && dashboard.retention.query;
  if (sketchPanels.retention && retention) {
    panels.push({
      key: "retention",
      element: $("sketches").querySelector(".retention"),
      // Each cohort is read with the periods after it, up to now.
      reads: sketchReads([retention.cohort, retention.returning], retention, { later: true }),
      reload: () => loadRetention(sketchPanels.retention, state, anchor, generation),
    });
  }
  const funnel = dashboard.funnel && dashboard.funnel.query;
  if (sketchPanels.funnel.length && funnel) {
    panels.push({
      key: "funnel",
      element: $("sketches").querySelector(".funnel"),
      reads: sketchReads(funnel.steps.split(","), funnel),
      reload: () => loadFunnel(sketchPanels.funnel, state, anchor, generation),
    });
  }
  for (const metric of chartMetrics()) {
    const query = dashboard.charts[metric.name] && dashboard.charts[metric.name].query;
    if (!query) continue;
    panels.push({
      key: `chart:${metric.name}`,
      element: element("panel", metric.name),
      reads: seriesReads(metric, [query]),
      reload: () => loadChart(metric, state, anchor, generation),
    });
  }
  return panels;
}
