// A trader's page: whether it may trade, the sanctions in play and when each ends, its
// figures, and its latest orders.

import { get, path } from "./api.js";
import { card, facts, h, table, time, words } from "./dom.js";
import { ordersTable } from "./orders.js";

const seconds = (value) => (value === null ? null : `${Math.round(Number(value) / 60)} min`);
const percent = (value) => (value === null ? null : `${(Number(value) * 100).toFixed(1)} %`);

export async function renderTrader(main, me, name) {
  const [record, orders] = await Promise.all([
    get(`/v1/traders/${path(name)}`),
    get("/v1/orders", { trader: name, limit: 20 }),
  ]);
  const f = record.figures;
  main.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Trader ", h("span", { class: "id" }, record.trader)),
      record.can_trade
        ? h("span", { class: "badge ok big" }, "can trade")
        : h("span", { class: "badge bad big" }, "cannot trade"),
    ),
    h(
      "div",
      { class: "columns even" },
      card(
        "Sanctions in play",
        table(
          "Sanctions in play",
          ["Sanction", "Severity", "Since", "Ends", "Appeal"],
          record.sanctions.map((s) =>
            h(
              "tr",
              {},
              h("td", {}, words(s.kind)),
              h("td", {}, s.severity ?? "—"),
              h("td", {}, time(s.since)),
              h("td", {}, s.expires_at ? time(s.expires_at) : "until lifted"),
              h("td", {}, s.appeal ?? "—"),
            ),
          ),
          "No sanction in play.",
        ),
      ),
      card(
        "Figures",
        facts([
          ["Orders", f.orders],
          ["Completed", f.completed],
          ["Cancelled", f.cancelled],
          ["Completed, 30 days", f.completed_30d],
          ["Cancelled, 30 days", f.cancelled_30d],
          ["Completion rate, 30 days", percent(f.completion_rate_30d) ?? "—"],
          ["Average time to pay", seconds(f.avg_pay_seconds) ?? "—"],
          ["Average time to release", seconds(f.avg_release_seconds) ?? "—"],
          ["Appeals opened", f.appeals_opened],
          ["Appeals won", f.appeals_won],
          ["Appeals lost", f.appeals_lost],
          ["As of", time(f.at)],
        ]),
      ),
    ),
    card(me.name === name ? "My latest orders" : "Latest orders", h("div", { class: "table-wrap" }, ordersTable(orders.orders, "No orders."))),
  );
}
